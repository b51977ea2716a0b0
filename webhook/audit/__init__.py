"""Audit: what mlgate decided, and which running workloads break the policies today.

    settings  the `journal:` and `audit:` sections of mlgate.yaml
    store     the SQL schema, migrations and queries (SQLite WAL or PostgreSQL)
    journal   the bounded, off-the-hot-path writer of decisions, and retention
    scan      the periodic cluster scan (real `kubernetes` client, paginated)
    report    JSON, HTML and wgpolicyk8s.io PolicyReport renderings
    access    bearer tokens: static token file, or TokenReview + SubjectAccessReview
    events    Kubernetes Events for denials and scan findings (rate-limited, deduplicated)
    policyreports  wgpolicyk8s.io PolicyReports in the cluster after each scan
    kube      the API client shared by the scan, Events and PolicyReports
    service   `Audit`: the journal, token checker, Events writer and scan as a service of
              the app, and the decision observers that feed the journal and the Events
    routes    the router of /metrics, /audit/report and /audit/decisions

Kept import-free: `webhook.config` imports `settings` while this package loads.
"""
