# The HPACK Huffman code (RFC 7541, Appendix B) in canonical form, for decoding HTTP/2 header values:
# symbols ordered by (code length, code), and per code length the first code, its index in that order
# and how many codes have that length. Generated from the RFC's table; 256 is EOS.

cdef uint16_t HUFF_SYMBOLS[257]
HUFF_SYMBOLS[:] = [
    48, 49, 50, 97, 99, 101, 105, 111, 115, 116, 32, 37, 45, 46, 47, 51,
    52, 53, 54, 55, 56, 57, 61, 65, 95, 98, 100, 102, 103, 104, 108, 109,
    110, 112, 114, 117, 58, 66, 67, 68, 69, 70, 71, 72, 73, 74, 75, 76,
    77, 78, 79, 80, 81, 82, 83, 84, 85, 86, 87, 89, 106, 107, 113, 118,
    119, 120, 121, 122, 38, 42, 44, 59, 88, 90, 33, 34, 40, 41, 63, 39,
    43, 124, 35, 62, 0, 36, 64, 91, 93, 126, 94, 125, 60, 96, 123, 92,
    195, 208, 128, 130, 131, 162, 184, 194, 224, 226, 153, 161, 167, 172, 176, 177,
    179, 209, 216, 217, 227, 229, 230, 129, 132, 133, 134, 136, 146, 154, 156, 160,
    163, 164, 169, 170, 173, 178, 181, 185, 186, 187, 189, 190, 196, 198, 228, 232,
    233, 1, 135, 137, 138, 139, 140, 141, 143, 147, 149, 150, 151, 152, 155, 157,
    158, 165, 166, 168, 174, 175, 180, 182, 183, 188, 191, 197, 231, 239, 9, 142,
    144, 145, 148, 159, 171, 206, 215, 225, 236, 237, 199, 207, 234, 235, 192, 193,
    200, 201, 202, 205, 210, 213, 218, 219, 238, 240, 242, 243, 255, 203, 204, 211,
    212, 214, 221, 222, 223, 241, 244, 245, 246, 247, 248, 250, 251, 252, 253, 254,
    2, 3, 4, 5, 6, 7, 8, 11, 12, 14, 15, 16, 17, 18, 19, 20,
    21, 23, 24, 25, 26, 27, 28, 29, 30, 31, 127, 220, 249, 10, 13, 22,
    256,
]

cdef uint32_t HUFF_FIRST_CODE[31]
HUFF_FIRST_CODE[:] = [
    0, 0, 0, 0, 0, 0, 20, 92, 248, 0, 1016, 2042, 4090, 8184, 16380, 32764,
    0, 0, 0, 524272, 1048550, 2097116, 4194258, 8388568, 16777194, 33554412, 67108832, 134217694, 268435426, 0,
    1073741820,
]

cdef uint16_t HUFF_FIRST_INDEX[31]
HUFF_FIRST_INDEX[:] = [
    0, 0, 0, 0, 0, 0, 10, 36, 68, 0, 74, 79, 82, 84, 90, 92,
    0, 0, 0, 95, 98, 106, 119, 145, 174, 186, 190, 205, 224, 0, 253,
]

cdef uint16_t HUFF_COUNT[31]
HUFF_COUNT[:] = [
    0, 0, 0, 0, 0, 10, 26, 32, 6, 0, 5, 3, 2, 6, 2, 3,
    0, 0, 0, 3, 8, 13, 26, 29, 12, 4, 15, 19, 29, 0, 4,
]

# The HPACK static table (RFC 7541, Appendix A): entry i (1-based) is the name
# HPACK_NAMES[HPACK_NAME_OFF[i-1]:+HPACK_NAME_LEN[i-1]] and its value likewise.
cdef const char *HPACK_NAMES = (   # one literal, joined by the C compiler; split between entries
    b":authority:method:method:path:path:scheme:scheme:status:status:status:status:status:status:status"
    b"accept-charsetaccept-encodingaccept-languageaccept-rangesacceptaccess-control-allow-originageallow"
    b"authorizationcache-controlcontent-dispositioncontent-encodingcontent-languagecontent-length"
    b"content-locationcontent-rangecontent-typecookiedateetagexpectexpiresfromhostif-match"
    b"if-modified-sinceif-none-matchif-rangeif-unmodified-sincelast-modifiedlinklocationmax-forwards"
    b"proxy-authenticateproxy-authorizationrangerefererrefreshretry-afterserverset-cookie"
    b"strict-transport-securitytransfer-encodinguser-agentvaryviawww-authenticate"
)
cdef const char *HPACK_VALUES = b"GETPOST//index.htmlhttphttps200204206304400404500gzip, deflate"
cdef uint16_t HPACK_NAME_OFF[61]
HPACK_NAME_OFF[:] = [
    0, 10, 17, 24, 29, 34, 41, 48, 55, 62, 69, 76, 83, 90, 97, 111,
    126, 141, 154, 160, 187, 190, 195, 208, 221, 240, 256, 272, 286, 302, 315, 327,
    333, 337, 341, 347, 354, 358, 362, 370, 387, 400, 408, 427, 440, 444, 452, 464,
    482, 501, 506, 513, 520, 531, 537, 547, 572, 589, 599, 603, 606,
]
cdef uint8_t HPACK_NAME_LEN[61]
HPACK_NAME_LEN[:] = [
    10, 7, 7, 5, 5, 7, 7, 7, 7, 7, 7, 7, 7, 7, 14, 15,
    15, 13, 6, 27, 3, 5, 13, 13, 19, 16, 16, 14, 16, 13, 12, 6,
    4, 4, 6, 7, 4, 4, 8, 17, 13, 8, 19, 13, 4, 8, 12, 18,
    19, 5, 7, 7, 11, 6, 10, 25, 17, 10, 4, 3, 16,
]
cdef uint16_t HPACK_VALUE_OFF[61]
HPACK_VALUE_OFF[:] = [
    0, 0, 3, 7, 8, 19, 23, 28, 31, 34, 37, 40, 43, 46, 49, 49,
    62, 62, 62, 62, 62, 62, 62, 62, 62, 62, 62, 62, 62, 62, 62, 62,
    62, 62, 62, 62, 62, 62, 62, 62, 62, 62, 62, 62, 62, 62, 62, 62,
    62, 62, 62, 62, 62, 62, 62, 62, 62, 62, 62, 62, 62,
]
cdef uint8_t HPACK_VALUE_LEN[61]
HPACK_VALUE_LEN[:] = [
    0, 3, 4, 1, 11, 4, 5, 3, 3, 3, 3, 3, 3, 3, 0, 13,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
]
