/*
 * reflinkfs logging: every layer reports problems through rfs_log, which
 * writes one line per message to the current sink (stderr by default).
 */
#ifndef REFLINKFS_LOG_H
#define REFLINKFS_LOG_H

#include <stdarg.h>

enum rfs_log_level { RFS_LOG_ERR = 0, RFS_LOG_WARN = 1, RFS_LOG_INFO = 2, RFS_LOG_DEBUG = 3 };

/* Sink receives a complete line without the trailing newline. */
typedef void (*rfs_log_sink_fn)(void *arg, int level, const char *line);

/* Route log lines to sink (NULL restores stderr).  Thread-safe. */
void rfs_log_set_sink(rfs_log_sink_fn sink, void *arg);

/* Messages above this level are dropped (default RFS_LOG_INFO). */
void rfs_log_set_level(int level);

/* Log one line, printf-style, prefixed "reflinkfs: ". */
void rfs_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
