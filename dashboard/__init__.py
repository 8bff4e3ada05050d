"""The hub's dashboard (`scb dashboard`): one read-only web page over the hub's database and the chain."""
