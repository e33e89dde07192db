/* PCRE2 with 8-bit code units: the library Suricata itself verifies `pcre` with. */
#ifndef NGFW_FP_PCRE_H
#define NGFW_FP_PCRE_H
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#endif
