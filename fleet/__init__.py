"""The fleet server (`scb fleet serve`): an operator's copy of every hub's data, a permanode, an API for the SaaS
side and a fleet page (docs/fleet.md). A front end on top of the application layer (`hub.fleet.protocol` is the
wire format it shares with the hubs)."""
