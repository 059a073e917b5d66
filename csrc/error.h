/* SPDX-License-Identifier: Apache-2.0 */
/* Error messages of the C core: every failing call names its cause. */
#ifndef EMBEDSHIM_ERROR_H
#define EMBEDSHIM_ERROR_H

#include <stddef.h>

/* printf into the caller's error buffer (may be NULL); returns rc. */
int es_err(char *err, size_t errlen, int rc, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

#endif /* EMBEDSHIM_ERROR_H */
