"""What tests share: frames and memory-port engines, policies written for a test, the App-ID corpus, QUIC
Initials, a running control, namespace sites. Imported as `tests.support.X`; nothing here is a test."""
