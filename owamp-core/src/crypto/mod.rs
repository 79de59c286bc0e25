//! Cryptography of RFC 4656: key derivation, token, control stream and test packets.
