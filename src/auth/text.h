/*
 * UTF-8 text helpers shared by the auth and system modules: trimming Unicode
 * white space, counting code points and cutting at a code-point limit. Input
 * is assumed to be valid UTF-8 (the codec rejects anything else).
 */
#ifndef ZNP_AUTH_TEXT_H
#define ZNP_AUTH_TEXT_H

#include <stddef.h>

/*
 * Find `s` (`len` bytes) without leading and trailing Unicode White_Space
 * (ASCII space and controls \t \n \v \f \r, U+0085, U+00A0, U+1680,
 * U+2000..U+200A, U+2028, U+2029, U+202F, U+205F, U+3000) and U+FEFF.
 * *start is the offset of the first kept byte, the return value the kept length.
 */
size_t znp_text_trim(const char *s, size_t len, size_t *start);

/* Number of code points in `len` bytes of UTF-8. */
size_t znp_text_length(const char *s, size_t len);

/* Number of bytes in the first `max_chars` code points of `s` (all of `len` when shorter). */
size_t znp_text_prefix(const char *s, size_t len, size_t max_chars);

/*
 * Copy `s` into out (NUL-terminated). When it does not fit, cut it at the
 * last code-point boundary that fits. Returns the number of bytes copied.
 */
size_t znp_text_copy(char *out, size_t out_size, const char *s, size_t len);

#endif
