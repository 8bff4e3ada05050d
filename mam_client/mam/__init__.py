"""MAM v0 codec, byte-identical to @iota/mam.js 1.0.0-beta.10 (see docs/mam.md and ../shared/mam-v0/SPEC.md).

Pure functions over trytes: no I/O, no clock, no randomness (the nonce search is deterministic).

    state = create_channel(seed, "restricted", side_key="MYKEY", security=2)
    msg = create_message(state, "HELLO")          # advances state; msg.payload, .root, .address, .next_root
    parse_message(msg.payload, msg.root, "MYKEY")  # -> ParsedMessage(message, next_root)
"""
from mam_client.mam.channel import MODES, ChannelState, create_channel
from mam_client.mam.errors import (
    InvalidChannel,
    InvalidInput,
    InvalidMessage,
    InvalidPayload,
    MamError,
    SignatureMismatch,
    WrongKeyOrRoot,
)
from mam_client.mam.message import (
    CreatedMessage,
    ParsedMessage,
    channel_root,
    create_message,
    decode_address,
    parse_message,
)

__all__ = [
    "MODES", "ChannelState", "CreatedMessage", "InvalidChannel", "InvalidInput", "InvalidMessage",
    "InvalidPayload", "MamError", "ParsedMessage", "SignatureMismatch", "WrongKeyOrRoot", "channel_root",
    "create_channel", "create_message", "decode_address", "parse_message",
]
