"""The cluster, Serve and MLflow configs refer to what exists: files, CLI flags, import paths, pinned versions.

No cloud or Kubernetes here, so these configs cannot be applied in the tests; instead every path, command and
version in them is checked against the repository, so that a renamed file or flag, or a version bump in
pyproject.toml alone, fails here.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
IMAGE_ROOT = "/home/ray/padirec/"  # the Dockerfile's WORKDIR and the `ray up` file mount: the repository there
CONFIGS = sorted((ROOT / "cluster").rglob("*.yaml")) + [ROOT / "padirec/serving/serve_config.yaml"]
DOCS = [ROOT / "README.md", ROOT / "mlflow/README.md", ROOT / "cluster/Dockerfile", *CONFIGS]
KUBERAY = {p.name: list(yaml.safe_load_all(p.read_text())) for p in sorted((ROOT / "cluster/kuberay").glob("*.yaml"))}

# spec fields of the KubeRay CRDs (ray.io/v1, ray-operator/apis/ray/v1/*_types.go)
RAYCLUSTER_SPEC = {"headGroupSpec", "workerGroupSpecs", "rayVersion", "enableInTreeAutoscaling", "autoscalerOptions",
                   "headServiceAnnotations", "suspend"}
HEAD_GROUP = {"serviceType", "headService", "enableIngress", "rayStartParams", "template"}
WORKER_GROUP = {"groupName", "replicas", "minReplicas", "maxReplicas", "numOfHosts", "rayStartParams", "template",
                "scaleStrategy"}
RAYJOB_SPEC = {"activeDeadlineSeconds", "backoffLimit", "rayClusterSpec", "submitterPodTemplate", "metadata",
               "clusterSelector", "submitterConfig", "managedBy", "deletionStrategy", "entrypoint", "runtimeEnvYAML",
               "jobId", "submissionMode", "entrypointResources", "entrypointNumCpus", "entrypointNumGpus",
               "ttlSecondsAfterFinished", "shutdownAfterJobFinishes", "suspend", "schedule"}
RAYSERVICE_SPEC = {"serveConfigV2", "rayClusterConfig", "serveService"}


def pins() -> dict[str, str]:
    """`name==version` pins of pyproject.toml's dependencies, and the project's own version."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pinned = [re.match(r"([\w-]+)(?:\[[^]]*\])?==([\w.]+)", d) for d in project["dependencies"]]
    found = dict(m.groups() for m in pinned if m)
    return {**found, "padirec": project["version"]}


def repo_path(path: str) -> Path:
    return ROOT / path.removeprefix(IMAGE_ROOT)


def job_command(script: Path) -> str:
    """The `padirec` subcommand a jobs/*.py entrypoint runs (`main(["pipeline", ...])`)."""
    return re.search(r'main\(\["([\w-]+)"', script.read_text()).group(1)


def ray_cluster_specs() -> list[dict]:
    """Every RayCluster spec in the KubeRay manifests (standalone, inside the RayJob, inside the RayService)."""
    specs = []
    for docs in KUBERAY.values():
        for doc in docs:
            spec = doc.get("spec", {})
            specs += [s for s in (spec if doc["kind"] == "RayCluster" else None, spec.get("rayClusterSpec"),
                                  spec.get("rayClusterConfig")) if s]
    return specs


def containers(spec: dict) -> list[dict]:
    groups = [spec["headGroupSpec"], *spec.get("workerGroupSpecs", [])]
    return [c for g in groups for c in g["template"]["spec"]["containers"]]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_config_parses(path):
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert docs and all(isinstance(d, dict) for d in docs)


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_referenced_repository_files_exist(path):
    """Paths like jobs/pipeline.py, cluster/pipeline.yaml or /home/ray/padirec/mlflow/server.sh (comments included)."""
    text = path.read_text()
    start = r"(?:^|(?<=[\s\"'=:\[(`]))"  # not inside another path such as /mnt/shared/padirec/cache
    refs = re.findall(start + rf"((?:{IMAGE_ROOT})?(?:jobs|cluster|mlflow|padirec|tests)/[\w./-]*\w)", text, re.M)
    missing = [ref for ref in refs if not repo_path(ref).exists()]
    assert not missing, f"{path.relative_to(ROOT)} refers to files that do not exist: {missing}"


def test_job_entrypoints_run_existing_cli_commands():
    from padirec.cli import build_parser

    commands = set(build_parser()._subparsers._group_actions[0].choices)
    scripts = sorted((ROOT / "jobs").glob("*.py"))
    assert {"pipeline.py", "deploy.py"} <= {s.name for s in scripts}
    assert {s.name: job_command(s) for s in scripts if job_command(s) not in commands} == {}


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_documented_job_commands_parse(path):
    """Every `python jobs/X.py ARGS` shown (README, cluster files, RayJob entrypoint) parses with X's CLI command;
    a `--config` file loads as that command's configuration."""
    from padirec.cli import build_parser
    from padirec.pipeline import pipeline_config

    for script, args in re.findall(rf"python (?:{IMAGE_ROOT})?(jobs/[\w-]+\.py)([^\n`'\"\\]*)", path.read_text()):
        argv = [a.removeprefix(IMAGE_ROOT) for a in shlex.split(args)]
        command = job_command(ROOT / script)
        parsed = build_parser().parse_args([command, *argv])  # SystemExit(2) on an unknown flag
        if command == "pipeline" and parsed.config:
            config = pipeline_config(str(ROOT / parsed.config))
            assert config.output_dir.startswith("/mnt/shared/"), "Tune/Train storage_path must be on shared storage"


def test_images_and_versions_match_the_pins():
    versions = pins()
    ray_image = f"rayproject/ray:{versions['ray']}-py311-cpu"
    dockerfile = (ROOT / "cluster/Dockerfile").read_text()
    assert re.search(r"^FROM (\S+)", dockerfile, re.M).group(1) == ray_image
    assert f"-t padirec:{versions['padirec']} ." in dockerfile
    assert re.search(r"^WORKDIR (\S+)", dockerfile, re.M).group(1) == IMAGE_ROOT.rstrip("/")
    launcher = yaml.safe_load((ROOT / "cluster/ray-cluster.yaml").read_text())
    assert launcher["docker"]["image"] == ray_image
    for install in (dockerfile, "\n".join(launcher["setup_commands"])):
        assert f"torch=={versions['torch']} --index-url https://download.pytorch.org/whl/cpu" in install
    for spec in ray_cluster_specs():
        assert spec["rayVersion"] == versions["ray"]
        assert {c["image"] for c in containers(spec)} == {f"padirec:{versions['padirec']}"}
    import ray

    assert ray.__version__ == versions["ray"]


def test_ray_up_config_is_valid_for_the_cluster_launcher():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((ROOT / "cluster/ray-cluster.yaml").read_text())
    validate_config(prepare_config(config))  # the launcher's JSON schema: a misspelt key fails
    assert set(config["file_mounts"]) == {IMAGE_ROOT.rstrip("/")}
    assert (ROOT / config["file_mounts"][IMAGE_ROOT.rstrip("/")] / "pyproject.toml").exists()
    assert f"pip install --no-cache-dir -e {IMAGE_ROOT.rstrip('/')}" in config["setup_commands"]
    options = " ".join(config["docker"]["run_options"])
    assert "-v /mnt/shared:/mnt/shared" in options and "--env MLFLOW_TRACKING_URI=http://" in options


def test_kuberay_manifests_use_crd_fields_shared_storage_and_the_mlflow_service():
    kinds = {doc["kind"]: doc for docs in KUBERAY.values() for doc in docs}
    assert {"RayCluster", "RayJob", "RayService", "PersistentVolumeClaim", "Deployment", "Service"} <= set(kinds)
    for kind, fields in (("RayCluster", RAYCLUSTER_SPEC), ("RayJob", RAYJOB_SPEC), ("RayService", RAYSERVICE_SPEC)):
        assert kinds[kind]["apiVersion"] == "ray.io/v1"
        assert set(kinds[kind]["spec"]) <= fields, kind
    for spec in ray_cluster_specs():
        assert set(spec) <= RAYCLUSTER_SPEC and set(spec["headGroupSpec"]) <= HEAD_GROUP
        assert all(set(group) <= WORKER_GROUP for group in spec["workerGroupSpecs"])
        params = [v for g in [spec["headGroupSpec"], *spec["workerGroupSpecs"]] for v in g["rayStartParams"].values()]
        assert all(isinstance(v, str) for v in params), "rayStartParams is a map of strings"
    env_values = [e.get("value", "") for doc in kinds.values() if "template" in doc.get("spec", {})
                  for c in doc["spec"]["template"]["spec"]["containers"] for e in c.get("env", [])]
    env_values += [e["value"] for spec in ray_cluster_specs() for c in containers(spec) for e in c["env"]]
    assert all(isinstance(v, str) for v in env_values), "Kubernetes env values are strings"
    service = kinds["Service"]
    mlflow_uri = f"http://{service['metadata']['name']}:{service['spec']['ports'][0]['port']}"
    claim = kinds["PersistentVolumeClaim"]["metadata"]["name"]
    for spec in ray_cluster_specs():
        for container in containers(spec):
            assert {"name": "MLFLOW_TRACKING_URI", "value": mlflow_uri} in container["env"]
    job_cluster = kinds["RayJob"]["spec"]["rayClusterSpec"]  # the pipeline writes Tune/Train results to /mnt/shared
    for group in [job_cluster["headGroupSpec"], *job_cluster["workerGroupSpecs"]]:
        pod = group["template"]["spec"]
        assert {"name": "shared", "persistentVolumeClaim": {"claimName": claim}} in pod["volumes"]
        assert all({"name": "shared", "mountPath": "/mnt/shared"} in c["volumeMounts"] for c in pod["containers"])


@pytest.mark.parametrize("source", ["padirec/serving/serve_config.yaml", "cluster/kuberay/rayservice.yaml"])
def test_serve_configs_build_the_app(source):
    """Ray Serve's own config schema accepts the file, and its applications build with their args."""
    from ray.serve.schema import ServeApplicationSchema, ServeDeploySchema

    from padirec.serving.app import build_app

    config = yaml.safe_load((ROOT / source).read_text())
    if config.get("kind") == "RayService":
        config = yaml.safe_load(config["spec"]["serveConfigV2"])
    schema = ServeDeploySchema.model_validate(config)
    # the schema ignores unknown keys: a misspelt one would silently fall back to a default
    assert set(config) <= set(ServeDeploySchema.model_fields)
    assert all(set(app) <= set(ServeApplicationSchema.model_fields) for app in config["applications"])
    assert [app.import_path for app in schema.applications] == ["padirec.serving.app:build_app"]
    for app in schema.applications:
        module, name = app.import_path.split(":")
        assert getattr(__import__(module, fromlist=[name]), name) is build_app
        build_app(app.args)  # validates the args (AppArgs) and binds the deployments; starts nothing


def run_check(env: dict | None = None) -> subprocess.CompletedProcess:
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return subprocess.run([ROOT / "mlflow/server.sh", "--check"], env={**os.environ, "PATH": path, **(env or {})},
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_mlflow_server_script_flags_are_accepted_by_mlflow(tmp_path):
    script = ROOT / "mlflow/server.sh"
    assert os.access(script, os.X_OK)
    done = run_check({"MLFLOW_DATA_DIR": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    command = shlex.split(done.stdout.strip().splitlines()[-1])
    assert command[:2] == ["mlflow", "server"] and "--serve-artifacts" in command
    assert command[command.index("--backend-store-uri") + 1] == f"sqlite:///{tmp_path}/mlflow.db"
    assert command[command.index("--artifacts-destination") + 1] == str(tmp_path / "artifacts")
    assert not (tmp_path / "artifacts").exists()  # --check starts nothing, creates nothing
    # the environment of the Kubernetes Deployment (the secret's value stands in for its reference)
    deployment = next(doc for doc in KUBERAY["mlflow.yaml"] if doc["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == [IMAGE_ROOT + "mlflow/server.sh"]
    env = {e["name"]: e.get("value", "postgresql+psycopg://mlflow:secret@db:5432/mlflow") for e in container["env"]}
    assert set(env) <= set(re.findall(r"\b(MLFLOW_[A-Z_]+)", script.read_text()))
    done = run_check({**env, "MLFLOW_ARTIFACTS_DESTINATION": "s3://bucket/padirec"})
    assert done.returncode == 0, done.stderr
    assert "--backend-store-uri postgresql+psycopg://mlflow:***@db:5432/mlflow" in done.stdout  # password masked
    assert "secret" not in done.stdout + done.stderr
    assert "--artifacts-destination s3://bucket/padirec" in done.stdout and "--host 0.0.0.0" in done.stdout
    bad = run_check({"MLFLOW_PORT": "not-a-port"})
    assert bad.returncode == 2 and "not-a-port" in bad.stderr
