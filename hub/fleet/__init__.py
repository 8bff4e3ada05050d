"""The hub's side of the fleet (docs/fleet.md): the wire format both sides share (`protocol`), the `[fleet]`
settings, the durable upload queue and its process `scb fleet-upload` (`upload`), and the fleet's HTTP client."""
