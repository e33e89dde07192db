# App-ID parsers of line-oriented text protocols: SSH's identification string, the server greetings and
# client commands of FTP, SMTP, POP3, IMAP and NNTP, VNC's version line, and WHOIS queries. A greeting's
# server name, SSH's identification string and a WHOIS query are the flow's host.


cdef void ssh_ident_put(appmeta_t *m, bint client, const uint8_t *p, uint32_t e, bint whole) noexcept nogil:
    """Keep one side's identification string p[0:e] ("SSH-2.0-software comments") in the flow's host entry,
    marked as such (HOST_SSH_MARK): the record shows it as Suricata does (ssh.client/ssh.server proto_version
    and software_version), never as app_host, which names hosts."""
    cdef uint32_t n = e - 4 if e - 4 < SSH_SIDE_MAX else SSH_SIDE_MAX, at
    if m.host_len == 0:
        m.host[0] = HOST_SSH_MARK
        m.host_len = 1
    if m.host[0] != HOST_SSH_MARK or m.host_len + n + 2 > HOST_MAX:
        return
    at = m.host_len
    m.host[at] = c'c' if client else c's'
    memcpy(m.host + at + 1, p + 4, n)
    m.host[at + 1 + n] = c'\n' if whole else c'\r'
    m.host_len = <uint8_t>(at + n + 2)


cdef void ssh_ident_rest(appmeta_t *m, const uint8_t *p, uint32_t n) noexcept nogil:
    # the rest of a side's identification string cut at the end of a segment (the entry ends in b'\r')
    cdef uint32_t e = 0, start = 1, i, have, room, take
    while e < n and e < 255 and p[e] != b'\r' and p[e] != b'\n' and b' ' <= p[e] <= b'~':
        e += 1
    for i in range(1, m.host_len - 1):
        if m.host[i] == b'\n':
            start = i + 1          # the last side's letter
    have = m.host_len - start - 2
    room = SSH_SIDE_MAX - have if have < SSH_SIDE_MAX else 0
    take = e if e < room else room
    memcpy(m.host + m.host_len - 1, p, take)
    m.host_len = <uint8_t>(m.host_len + take)
    m.host[m.host_len - 1] = c'\n' if e < n or take < e else c'\r'


cdef uint32_t ssh_ident_end(const uint8_t *p, uint32_t n) noexcept nogil:
    # the end of an identification string at p (printable ASCII up to CR/LF, 255 bytes at most; n when it
    # runs to the end of p); 0: not one
    cdef uint32_t e = 4
    if not (_starts(p, n, "SSH-2.0-") or _starts(p, n, "SSH-1.99-") or _starts(p, n, "SSH-1.5-")):
        return 0
    while e < n and e < 255 and p[e] != b'\r' and p[e] != b'\n':
        if p[e] < b' ' or p[e] > b'~':
            return 0
        e += 1
    return e


cdef int parse_ssh(appctx_t *c) noexcept nogil:
    """The identification string "SSH-2.0-software comments" (or 1.99 / 1.5), the first one a flow carries (the
    client's or the server's, whichever speaks first); the other side's is read after the decision
    (HOSTX_SSH)."""
    cdef const uint8_t *p = c.stream
    cdef uint32_t n = c.stream_len, e
    if n < 4:
        return PARSE_NEED_MORE if _prefix_of(p, n, "SSH-") and _stream_can_grow(c) else PARSE_NO
    if not _starts(p, n, "SSH-"):
        return PARSE_NO
    if n < 8:
        return PARSE_NEED_MORE if _stream_can_grow(c) else PARSE_NO
    if not (_starts(p, n, "SSH-2.0-") or _starts(p, n, "SSH-1.99-") or _starts(p, n, "SSH-1.5-")):
        return PARSE_NO
    e = ssh_ident_end(p, n)
    if e == 0:
        return PARSE_NO
    if e == n and n < 255 and _stream_can_grow(c):
        return _tentative(c, APP_SSH)      # cut at the segment's end: its rest is in the next one
    c.meta.host_len = 0
    ssh_ident_put(c.meta, c.to_server, p, e, e < n)
    return APP_SSH


cdef bint _contains_ci(const uint8_t *p, uint32_t n, const char *lit) noexcept nogil:
    cdef uint32_t i
    for i in range(n):
        if _ieq(p + i, n - i, lit):
            return True
    return False


cdef void _greeting_host(appmeta_t *m, const uint8_t *p, uint32_t e) noexcept nogil:
    # "220 mail.example.net ESMTP ...": the server names itself first; a greeting that starts with prose
    # ("220 \"Authorized users only\"") names nothing. nDPI compatibility: nDPI reports that name as the host
    cdef uint32_t i = 4, j
    if e < 5 or not _starts(p, e, "220"):
        return
    j = i
    while j < e and p[j] > b' ':
        if not (_dns_char_ok(p[j]) or p[j] == b'.'):
            return
        j += 1
    if j > i:
        _set_host(m, p + i, j - i)


cdef int _greeting_app(appctx_t *c, const uint8_t *p, uint32_t e) noexcept nogil:
    # a "NNN text" server greeting: the protocol its text or, failing that, its port names
    if _contains_ci(p, e, "ftp"):
        return APP_FTP
    if _contains_ci(p, e, "smtp") or _contains_ci(p, e, "mail"):
        return APP_SMTP
    if _contains_ci(p, e, "nntp") or _contains_ci(p, e, "news"):
        return APP_NNTP
    if _either_port(c, 21):
        return APP_FTP
    if _either_port(c, 25) or _either_port(c, 587):
        return APP_SMTP
    if _either_port(c, 119):
        return APP_NNTP
    return PARSE_NO


cdef int parse_whois(appctx_t *c) noexcept nogil:
    """WHOIS (TCP 43): the client's query is one printable line; it is the flow's host (a domain, usually)."""
    cdef const uint8_t *p = c.stream
    cdef uint32_t n = c.stream_len, e = 0
    if not c.to_server or c.server_port != 43:
        return PARSE_NO
    while e < n and e < 256 and p[e] != b'\r' and p[e] != b'\n':
        if p[e] < b' ' or p[e] > b'~':
            return PARSE_NO
        e += 1
    if e >= n:
        return PARSE_NEED_MORE if _stream_can_grow(c) and e < 256 else PARSE_NO
    if e == 0:
        return PARSE_NO
    _set_host(c.meta, p, e)
    return APP_WHOIS


cdef bint _one_word(const uint8_t *p, uint32_t n) noexcept nogil:
    # the rest of a command line is one word (no space before its CR/LF)
    cdef uint32_t i
    for i in range(n):
        if p[i] == b'\r' or p[i] == b'\n':
            return True
        if p[i] == b' ':
            return False
    return True


cdef int parse_mail_ftp(appctx_t *c) noexcept nogil:
    """Line-oriented protocols told apart by the server's greeting or the client's first command:
    FTP (220 ... FTP / USER, AUTH), SMTP (220 ... SMTP / EHLO, HELO), POP3 (+OK / CAPA), IMAP (* OK /
    tagged command), NNTP (200/201 ... NNTP / MODE READER), VNC (RFB 003.00x)."""
    cdef const uint8_t *p = c.stream
    cdef uint32_t n = c.stream_len, e = 0, i
    cdef int r
    if n < 4:
        return PARSE_NEED_MORE if n > 0 and _stream_can_grow(c) and b' ' <= p[0] <= b'~' else PARSE_NO
    while e < n and e < 512 and p[e] != b'\n':
        if (p[e] < b' ' or p[e] > b'~') and p[e] != b'\r' and p[e] != b'\t':
            return PARSE_NO
        e += 1
    if e >= n:
        return PARSE_NEED_MORE if _stream_can_grow(c) and e < 512 else PARSE_NO
    if n >= 12 and _starts(p, n, "RFB 00") and p[7] == b'.' and p[11] == b'\n':
        return APP_VNC
    # server greetings, read in either direction: a capture that starts mid-flow swaps the sides
    if _starts(p, n, "+OK"):
        return APP_POP3
    if _starts(p, n, "* OK") or _starts(p, n, "* PREAUTH"):
        return APP_IMAP
    if b'1' <= p[0] <= b'5' and b'0' <= p[1] <= b'9' and b'0' <= p[2] <= b'9' and (p[3] == b' ' or p[3] == b'-'):
        r = _greeting_app(c, p, e)
        if r > 0:
            _greeting_host(c.meta, p, e)
        return r
    if _ieq(p, n, "user ") and not _one_word(p + 5, e - 5):
        return PARSE_NO   # IRC's USER has four parameters (USER name mode * :real name); FTP's has one
    if _ieq(p, n, "user ") or _ieq(p, n, "auth tls") or _ieq(p, n, "auth ssl") or _ieq(p, n, "feat\r") \
            or _ieq(p, n, "syst\r"):
        if _ieq(p, n, "user ") and _either_port(c, 110):
            return APP_POP3
        return APP_FTP
    if _ieq(p, n, "pass ") or _ieq(p, n, "retr "):
        return APP_POP3 if _either_port(c, 110) else APP_FTP
    if _ieq(p, n, "pasv\r") or _ieq(p, n, "epsv") or _ieq(p, n, "port ") or _ieq(p, n, "eprt ") \
            or _ieq(p, n, "cwd ") or _ieq(p, n, "pwd\r") or _ieq(p, n, "type ") or _ieq(p, n, "stor ") \
            or _ieq(p, n, "nlst") or _ieq(p, n, "mdtm ") or _ieq(p, n, "size "):
        return APP_FTP
    if _ieq(p, n, "ehlo ") or _ieq(p, n, "helo "):
        return APP_SMTP
    if _ieq(p, n, "capa\r") or _ieq(p, n, "stls\r") or _ieq(p, n, "apop "):
        return APP_POP3
    if _ieq(p, n, "mode reader") or _ieq(p, n, "authinfo "):
        return APP_NNTP
    # IMAP: tag SP command
    i = 0
    while i < e and i < 32 and p[i] > b' ' and p[i] != b'(' and p[i] != b')' and p[i] != b'{' and p[i] != b'*' \
            and p[i] != b'%' and p[i] != b'"' and p[i] != b'\\':
        i += 1
    if i > 0 and i < e and p[i] == b' ':
        i += 1
        if _ieq(p + i, e - i, "capability") or _ieq(p + i, e - i, "login ") or _ieq(p + i, e - i, "starttls") \
                or _ieq(p + i, e - i, "authenticate ") or _ieq(p + i, e - i, "id ("):
            return APP_IMAP
    return PARSE_NO
