"""The contracts between stages, each written once: MLflow names and artifact paths (`names`), adapter files
and reference resolvers (`artifacts`), the generator checkpoint (`checkpoint`), the gathered dataset (`dataset`).

This package sits below every stage and imports none of them."""
