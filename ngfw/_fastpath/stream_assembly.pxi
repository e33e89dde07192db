# Message assembly over a stream: a message cut over segments -- a ClientHello (or its TLS records), an HTTP
# request or response head, a TLS server's handshake up to its Certificate -- is gathered in a buffer until it
# is whole, then read at once. Only in-order bytes come here: inspection hands over what the stream engine
# (stream.pxi) passed as new, so a reordered or retransmitted segment never lands in a message. Buffers come
# from a small pool shared by all flows (only flows with a message in pieces hold one); the inspection slot
# says which it holds and what for (inspslot_t.asm, asm_kind, asm_len). The readers are inspect_tls.pxi's
# (tls_hello_assemble, http_head_assemble, tls_server_bytes).

cdef int asm_pool_init(asmpool_t *p) noexcept nogil:
    cdef int i
    p.buf = <uint8_t (*)[ASM_MAX]>malloc(<size_t>ASM_SLOTS * ASM_MAX)
    p.next_free = <int32_t *>malloc(ASM_SLOTS * sizeof(int32_t))
    if p.buf == NULL or p.next_free == NULL:
        return -1
    for i in range(ASM_SLOTS):
        p.next_free[i] = i + 1 if i + 1 < ASM_SLOTS else -1
    p.free_head = 0
    p.exhausted = 0
    return 0

cdef inline bint asm_take(asmpool_t *p, inspslot_t *s, uint8_t kind) noexcept nogil:
    """A buffer for the slot's message of this kind; False when none is left (counted)."""
    if p.free_head < 0:
        p.exhausted += 1
        return False
    s.asm = p.free_head
    p.free_head = p.next_free[s.asm]
    s.asm_len = 0
    s.asm_kind = kind
    return True

cdef inline void asm_give(asmpool_t *p, inspslot_t *s) noexcept nogil:
    if s.asm >= 0:
        p.next_free[s.asm] = p.free_head
        p.free_head = s.asm
        s.asm = -1
        s.asm_kind = 0

cdef inline bint asm_append(asmpool_t *p, inspslot_t *s, const uint8_t *d, uint32_t n) noexcept nogil:
    """Append in-order bytes to the slot's message, as many as fit; True when the buffer is full."""
    cdef uint32_t take = n if s.asm_len + n <= ASM_MAX else ASM_MAX - s.asm_len
    memcpy(p.buf[s.asm] + s.asm_len, d, take)
    s.asm_len += take
    return s.asm_len >= ASM_MAX

cdef void asm_begin(insws_t *ws, inspslot_t *s, uint8_t kind, const uint8_t *d, uint32_t n) noexcept nogil:
    """Start assembling a message whose first `n` (< ASM_MAX) bytes are this segment's."""
    if s.asm >= 0:
        return
    if asm_take(&ws.asm_pool, s, kind):
        asm_append(&ws.asm_pool, s, d, n)
