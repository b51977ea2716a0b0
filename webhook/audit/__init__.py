"""Audit: what mlgate decided, and which running workloads break the policies today.

    settings  the `journal:` and `audit:` sections of mlgate.yaml
    store     the SQL schema, migrations and queries (SQLite WAL or PostgreSQL)
    journal   the bounded, off-the-hot-path writer of decisions, and retention
    scan      the periodic cluster scan (real `kubernetes` client, paginated)
    report    JSON, HTML and wgpolicyk8s.io PolicyReport renderings
    access    bearer tokens: static token file, or TokenReview + SubjectAccessReview
    routes    `install(app)`: /metrics, /audit/report, /audit/decisions and the hooks

Kept import-free: `webhook.config` imports `settings` while this package loads.
"""
