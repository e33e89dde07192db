# The App-ID dispatcher: the registry's parsers (app_registry.pxi) tried over one payload packet.


cdef int appid_parse(appctx_t *c) noexcept nogil:
    """Try the parsers registered for this transport, in the registry's order, each only on a payload its hints
    admit; the first positive answer wins, else PARSE_NEED_MORE when a parser whose wait counts asked for more
    bytes, else PARSE_NO."""
    cdef const app_registration_t *row
    cdef uint32_t i, end
    cdef int r, need = 0
    cdef uint8_t b0
    if c.l4proto == P_TCP:
        if c.stream_len == 0:
            return PARSE_NO
        b0 = c.stream[0]
        i = APP_REG_TCP
        end = APP_REG_UDP
    elif c.l4proto == P_UDP:
        if c.payload_len == 0:
            return PARSE_NO
        b0 = c.payload[0]
        i = APP_REG_UDP
        end = APP_REG_END
    else:
        return PARSE_NO
    while i < end:
        row = &APP_REGISTRY[i]
        i += 1
        if not (row.first_bytes[b0 >> 6] >> (b0 & 63)) & 1:
            continue
        if row.server_port and c.server_port != row.server_port:
            continue
        r = row.parse(c)
        if r > 0:
            return r
        if r == PARSE_NEED_MORE and row.more and (row.more_port == 0 or _either_port(c, row.more_port)):
            need = 1
    return PARSE_NEED_MORE if need else PARSE_NO
