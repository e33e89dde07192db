# The Hyperscan (libhs) C API, declared once.
cdef extern from "hs.h" nogil:
    ctypedef struct hs_database_t:
        pass
    ctypedef struct hs_scratch_t:
        pass
    ctypedef struct hs_platform_info_t:
        pass
    ctypedef struct hs_compile_error_t:
        char *message
        int expression
    ctypedef int (*match_event_handler)(unsigned int id, unsigned long long frm, unsigned long long to,
                                        unsigned int flags, void *context) noexcept nogil
    int HS_SUCCESS, HS_MODE_BLOCK, HS_MODE_STREAM
    const char *hs_version()
    int hs_compile_multi(const char *const *expressions, const unsigned int *flags, const unsigned int *ids,
                         unsigned int elements, unsigned int mode, const hs_platform_info_t *platform,
                         hs_database_t **db, hs_compile_error_t **error)
    int hs_free_compile_error(hs_compile_error_t *error)
    ctypedef struct hs_expr_info_t:
        unsigned int min_width
        unsigned int max_width
        char unordered_matches
        char matches_at_eod
        char matches_only_at_eod
    int hs_expression_info(const char *expression, unsigned int flags, hs_expr_info_t **info,
                           hs_compile_error_t **error)
    int hs_free_database(hs_database_t *db)
    int hs_alloc_scratch(const hs_database_t *db, hs_scratch_t **scratch)
    int hs_free_scratch(hs_scratch_t *scratch)
    int hs_serialize_database(const hs_database_t *db, char **bytes, size_t *length)
    int hs_deserialize_database(const char *bytes, const size_t length, hs_database_t **db)
    int hs_scan(const hs_database_t *db, const char *data, unsigned int length, unsigned int flags,
                hs_scratch_t *scratch, match_event_handler onEvent, void *context)
    # streaming mode: matches carry across the TCP segments of one direction
    ctypedef struct hs_stream_t:
        pass
    int hs_open_stream(const hs_database_t *db, unsigned int flags, hs_stream_t **stream)
    int hs_scan_stream(hs_stream_t *id, const char *data, unsigned int length, unsigned int flags,
                       hs_scratch_t *scratch, match_event_handler onEvent, void *ctxt)
    int hs_close_stream(hs_stream_t *id, hs_scratch_t *scratch, match_event_handler onEvent, void *ctxt)
    int hs_stream_size(const hs_database_t *database, size_t *stream_size)
    int hs_compile_lit_multi(const char *const *expressions, const unsigned int *flags, const unsigned int *ids,
                             const size_t *lens, unsigned int elements, unsigned int mode,
                             const hs_platform_info_t *platform, hs_database_t **db, hs_compile_error_t **error)
    int HS_FLAG_CASELESS
    int HS_SCAN_TERMINATED
