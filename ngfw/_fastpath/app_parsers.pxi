# App-ID protocol parsers: recognise a flow's application from the structure of its first bytes.
#
# Included after defs.pxi and appid_defs.pxi. Every parser is a pure function of (payload, stream,
# scratch): no allocation except OpenSSL's cipher context for QUIC Initial decryption, every read
# bounds-checked against the length it was given. Ports only break ties between protocols that share a
# wire format (DNS / mDNS / LLMNR) or choose what to try first; bytes always decide.
#
# One file per protocol family (app_dns, app_tls, app_http, app_quic, app_text, app_tcp_binary,
# app_udp_binary), each parser registered in one table, app_registry.py, from which app_registry.pxi is
# generated: the APP_* ids and BUILTIN_APPS, the families' includes, the parsers by name and the
# dispatcher's table (docs/apps.md, "Adding a parser").

include "crypto.pxd.pxi"      # QUIC's Initial keys; inspection's JA3 uses its declarations too
include "app_common.pxi"
include "app_registry.pxi"
include "app_dispatch.pxi"
