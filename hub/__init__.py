"""The application layer: use cases that span the components, shared by the `scb` command and the dashboard.

Layers point one way:

    hub            status and alerts, verification by address, proof export, the archive reader, the process
                   plan and supervisor of `scb run`, the `scb` command table           (imports components)
    energy_manager, mam_client, settlement, dashboard
                   the components; each owns its tables, settings and loops; none imports another's CLI or
                   service module                                                      (import scb, models)
    scb            plumbing: configuration, settings validation, database, migrations, files, the error tree,
                   the failure policy and heartbeats, HTTP edge helpers, the community clock (imports nothing above)
"""
