/* Logging sink shared by every layer (see include/reflinkfs/log.h). */
#include "reflinkfs/log.h"

#include <pthread.h>
#include <stdio.h>

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static rfs_log_sink_fn log_sink;
static void *log_arg;
static int log_level = RFS_LOG_INFO;

void rfs_log_set_sink(rfs_log_sink_fn sink, void *arg)
{
	pthread_mutex_lock(&log_lock);
	log_sink = sink;
	log_arg = arg;
	pthread_mutex_unlock(&log_lock);
}

void rfs_log_set_level(int level)
{
	pthread_mutex_lock(&log_lock);
	log_level = level;
	pthread_mutex_unlock(&log_lock);
}

void rfs_log(int level, const char *fmt, ...)
{
	char line[1024];
	va_list ap;

	pthread_mutex_lock(&log_lock);
	if (level > log_level) {
		pthread_mutex_unlock(&log_lock);
		return;
	}
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (log_sink)
		log_sink(log_arg, level, line);
	else
		fprintf(stderr, "reflinkfs: %s\n", line);
	pthread_mutex_unlock(&log_lock);
}
