// SPDX-License-Identifier: Apache-2.0
/* Error messages of the C core (see error.h). */
#include <stdarg.h>
#include <stdio.h>

#include "error.h"

int es_err(char *err, size_t errlen, int rc, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return rc;
}
