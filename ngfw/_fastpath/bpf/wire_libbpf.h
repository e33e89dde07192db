/* libbpf's messages, kept instead of printed: a dataplane that cannot load the wire program says so in one
 * sentence, and the verifier's log (hundreds of lines) goes to the debug log, not to stderr. */
#ifndef NGFW_WIRE_LIBBPF_H
#define NGFW_WIRE_LIBBPF_H

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <bpf/libbpf.h>

static char ngfw_libbpf_messages[8192];
static size_t ngfw_libbpf_used;

static int ngfw_libbpf_keep(enum libbpf_print_level level, const char *format, va_list args) {
    int n;
    if (level == LIBBPF_DEBUG || ngfw_libbpf_used >= sizeof(ngfw_libbpf_messages) - 1)
        return 0;
    n = vsnprintf(ngfw_libbpf_messages + ngfw_libbpf_used, sizeof(ngfw_libbpf_messages) - ngfw_libbpf_used,
                  format, args);
    if (n > 0) {
        ngfw_libbpf_used += (size_t)n;
        if (ngfw_libbpf_used > sizeof(ngfw_libbpf_messages) - 1)
            ngfw_libbpf_used = sizeof(ngfw_libbpf_messages) - 1;
    }
    return 0;
}

/* Start collecting (forgetting earlier messages); the GIL serialises callers. */
static void ngfw_libbpf_collect(void) {
    ngfw_libbpf_used = 0;
    ngfw_libbpf_messages[0] = 0;
    libbpf_set_print(ngfw_libbpf_keep);
}

static const char *ngfw_libbpf_collected(void) { return ngfw_libbpf_messages; }

#endif
