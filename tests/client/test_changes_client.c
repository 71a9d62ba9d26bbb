/*
 * The client API of the change journal (rfs_changes_read,
 * rfs_changes_follow in include/reflinkfs/journal.h) on a real mount:
 * subtree reads with the next cursor, nothing new since it, early stop,
 * follow delivering a change made while it waits (it commits by itself),
 * follow's timeout, the daemon holding a RFS_IOC_CHANGES_WAIT request
 * until a change below the directory and answering EINTR when the
 * follower gets a signal (no daemon thread left waiting for a dead
 * follower), and the errors a tool must tell apart (not a mount,
 * not a directory, not a cursor, another pool's cursor).  Starts the
 * daemon ($RFS_BIN mount -f) and unmounts it; skipped without /dev/fuse.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdatomic.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "reflinkfs/fs.h"
#include "reflinkfs/journal.h"

extern char **environ;

static char g_dir[4096], g_pool[4200], g_mnt[4200], g_bin[4096];
static pid_t g_daemon;

static void path_of(char *out, size_t cap, const char *rel)
{
	snprintf(out, cap, "%s/%s", g_mnt, rel);
}

static bool mounted(void)
{
	struct stat a, b;
	return stat(g_mnt, &a) == 0 && stat(g_dir, &b) == 0 && a.st_dev != b.st_dev;
}

static int setup(void **state)
{
	(void)state;
	if (access("/dev/fuse", R_OK | W_OK) != 0)
		return 0; /* each test skips */
	const char *base = getenv("RFS_TEST_DIR"), *bin = getenv("RFS_BIN");
	snprintf(g_bin, sizeof(g_bin), "%s", bin && *bin ? bin : "build/reflinkfs");
	snprintf(g_dir, sizeof(g_dir), "%s/jclXXXXXX", base && *base ? base : "/tmp");
	if (!mkdtemp(g_dir))
		return -1;
	snprintf(g_pool, sizeof(g_pool), "%s/pool", g_dir);
	snprintf(g_mnt, sizeof(g_mnt), "%s/mnt", g_dir);
	if (mkdir(g_mnt, 0755) || rfs_fs_mkfs(g_pool, 64ull << 20, 0))
		return -1;
	char *argv[] = {g_bin, "mount", "-f", g_pool, g_mnt, NULL};
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	char log[4300];
	snprintf(log, sizeof(log), "%s/daemon.log", g_dir);
	posix_spawn_file_actions_addopen(&fa, 2, log, O_WRONLY | O_CREAT | O_APPEND, 0644);
	int ret = posix_spawn(&g_daemon, g_bin, &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (ret)
		return -1;
	for (int i = 0; i < 200 && !mounted(); i++)
		usleep(25000);
	return mounted() ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	if (!g_daemon)
		return 0;
	if (mounted()) {
		char *argv[] = {"fusermount3", "-u", g_mnt, NULL};
		pid_t p;
		if (posix_spawnp(&p, "fusermount3", NULL, NULL, argv, environ) == 0)
			waitpid(p, NULL, 0);
	}
	int st;
	for (int i = 0; i < 400 && waitpid(g_daemon, &st, WNOHANG) == 0; i++)
		usleep(25000);
	if (waitpid(g_daemon, &st, WNOHANG) == 0) { /* ours, by pid */
		kill(g_daemon, SIGKILL);
		waitpid(g_daemon, &st, 0);
	}
	char p[4300];
	snprintf(p, sizeof(p), "%s/daemon.log", g_dir);
	unlink(p);
	unlink(g_pool);
	rmdir(g_mnt);
	rmdir(g_dir);
	return 0;
}

#define NEED_MOUNT()                                       \
	do {                                               \
		if (!g_daemon) {                           \
			print_message("no /dev/fuse\n"); \
			skip();                            \
		}                                          \
	} while (0)

struct got {
	char text[8192];
	unsigned n, stop_after;
};

static int collect(void *arg, const struct rfs_change *c)
{
	struct got *g = arg;
	if (g->stop_after && g->n == g->stop_after)
		return 7;
	size_t l = strlen(g->text);
	snprintf(g->text + l, sizeof(g->text) - l, "%s %s%s%s%s\n", rfs_change_kind_name(c->kind),
		 c->path ? c->path : "(null)", c->old_path ? " " : "",
		 c->old_path ? c->old_path : "",
		 (c->also & (1u << RFS_CHANGE_DATA)) ? "+data" : "");
	g->n++;
	return 0;
}

/* Create rel and commit (fsync commits the whole pool). */
static void create_sync(const char *rel)
{
	char p[4400];
	path_of(p, sizeof(p), rel);
	int fd = open(p, O_WRONLY | O_CREAT, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "x", 1), 1);
	assert_int_equal(fsync(fd), 0);
	close(fd);
}

static void test_read(void **state)
{
	(void)state;
	NEED_MOUNT();
	char p[4400], c0[RFS_CURSOR_MAX], c1[RFS_CURSOR_MAX];
	struct got g = {0};
	assert_int_equal(rfs_changes_read(g_mnt, NULL, collect, &g, c0), 0);
	path_of(p, sizeof(p), "a");
	assert_int_equal(mkdir(p, 0755), 0);
	path_of(p, sizeof(p), "b");
	assert_int_equal(mkdir(p, 0755), 0);
	create_sync("a/x");
	create_sync("b/y");
	memset(&g, 0, sizeof(g));
	path_of(p, sizeof(p), "a");
	assert_int_equal(rfs_changes_read(p, c0, collect, &g, c1), 0);
	assert_string_equal(g.text, "create x+data\n"); /* one commit: merged */
	/* Nothing new below a since the new cursor. */
	memset(&g, 0, sizeof(g));
	assert_int_equal(rfs_changes_read(p, c1, collect, &g, c1), 0);
	assert_int_equal(g.n, 0);
	/* The whole mount, stopped early: the stop value, next untouched. */
	memset(&g, 0, sizeof(g));
	g.stop_after = 2;
	strcpy(c1, "untouched");
	assert_int_equal(rfs_changes_read(g_mnt, c0, collect, &g, c1), 7);
	assert_int_equal(g.n, 2);
	assert_string_equal(c1, "untouched");
}

struct later {
	const char *rel;
	unsigned ms;
};

static void *create_later(void *arg)
{
	struct later *l = arg;
	usleep(l->ms * 1000u);
	char p[4400];
	path_of(p, sizeof(p), l->rel);
	int fd = open(p, O_WRONLY | O_CREAT, 0644);
	if (fd >= 0)
		close(fd); /* no fsync: the follower asks for the commit */
	return NULL;
}

static void test_follow(void **state)
{
	(void)state;
	NEED_MOUNT();
	char c0[RFS_CURSOR_MAX], c1[RFS_CURSOR_MAX];
	struct got g = {0};
	assert_int_equal(rfs_changes_read(g_mnt, NULL, collect, &g, c0), 0);
	/* Nothing happens: the timeout, with a cursor to go on from. */
	memset(&g, 0, sizeof(g));
	c1[0] = 0;
	assert_int_equal(rfs_changes_follow(g_mnt, c0, 100, collect, &g, c1), -ETIMEDOUT);
	assert_int_equal(g.n, 0);
	assert_string_equal(c1, c0);
	/* A file made while the follower waits is delivered. */
	pthread_t t;
	struct later l = {"followed", 300};
	assert_int_equal(pthread_create(&t, NULL, create_later, &l), 0);
	memset(&g, 0, sizeof(g));
	int ret = rfs_changes_follow(g_mnt, c0, 60000, collect, &g, c1);
	pthread_join(t, NULL);
	assert_int_equal(ret, 0);
	assert_non_null(strstr(g.text, "create followed\n"));
	assert_string_not_equal(c1, c0);
}

/* One RFS_IOC_CHANGES with RFS_IOC_CHANGES_WAIT in a thread. */
struct waiter {
	int fd;
	struct rfs_ioc_changes *p;
	int ret, err;
	atomic_bool done;
};

static void *wait_ioctl(void *arg)
{
	struct waiter *w = arg;
	w->ret = ioctl(w->fd, RFS_IOC_CHANGES, w->p);
	w->err = errno;
	atomic_store(&w->done, true);
	return NULL;
}

static struct rfs_ioc_changes *wait_req(const char *cursor, unsigned wait_ms)
{
	struct rfs_ioc_changes *p = calloc(1, sizeof(*p));
	assert_non_null(p);
	snprintf(p->cursor, sizeof(p->cursor), "%s", cursor);
	p->flags = RFS_IOC_CHANGES_COMMIT | RFS_IOC_CHANGES_WAIT;
	p->wait_ms = (uint16_t)wait_ms;
	return p;
}

static int open_rel(const char *rel)
{
	char p[4400];
	path_of(p, sizeof(p), rel);
	int fd = open(p, O_RDONLY | O_DIRECTORY);
	assert_true(fd >= 0);
	return fd;
}

/* The daemon holds the request until something is recorded below the
 * directory (a change elsewhere does not end it), commits it and answers
 * with it; with nothing, it answers at wait_ms, saying it waited. */
static void test_wait_in_daemon(void **state)
{
	(void)state;
	NEED_MOUNT();
	char c0[RFS_CURSOR_MAX], p[4400];
	struct got g = {0};
	path_of(p, sizeof(p), "w");
	assert_int_equal(mkdir(p, 0755), 0);
	path_of(p, sizeof(p), "elsewhere");
	assert_int_equal(mkdir(p, 0755), 0);
	create_sync("w/old");
	path_of(p, sizeof(p), "w");
	assert_int_equal(rfs_changes_read(p, NULL, collect, &g, c0), 0);
	struct waiter w = {.fd = open_rel("w"), .p = wait_req(c0, 60000)};
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, wait_ioctl, &w), 0);
	struct later l1 = {"elsewhere/x", 0}, l2 = {"w/new", 0};
	create_later(&l1);
	create_later(&l2); /* no fsync: the waiting follower commits */
	pthread_join(t, NULL);
	assert_int_equal(w.ret, 0);
	assert_true(w.p->flags & RFS_IOC_CHANGES_WAITED);
	assert_true(w.p->done);
	assert_int_equal(w.p->count, 1);
	const struct rfs_ioc_change *h = (const void *)w.p->buf;
	assert_int_equal(h->kind, RFS_CHANGE_CREATE);
	assert_int_equal(h->pathlen, 3);
	assert_memory_equal(w.p->buf + sizeof(*h) + h->nranges * sizeof(struct rfs_change_range),
			    "new", 3);
	/* Nothing below w any more: the wait ends at wait_ms, empty. */
	struct rfs_ioc_changes *q = wait_req(w.p->cursor, 20);
	assert_int_equal(ioctl(w.fd, RFS_IOC_CHANGES, q), 0);
	assert_true(q->flags & RFS_IOC_CHANGES_WAITED);
	assert_true(q->done);
	assert_int_equal(q->count, 0);
	free(q);
	free(w.p);
	close(w.fd);
}

static void on_usr1(int sig)
{
	(void)sig;
}

/* A signal to a follower waiting in the daemon interrupts the request
 * (EINTR), and the daemon's thread stops waiting: after more
 * interrupted waits than RFS_CHANGES_WAITERS_MAX, a new follower may
 * still wait (a waiter left behind for each would have used them up). */
static void test_wait_interrupted(void **state)
{
	(void)state;
	NEED_MOUNT();
	char c0[RFS_CURSOR_MAX], p[4400];
	struct got g = {0};
	path_of(p, sizeof(p), "quiet");
	assert_int_equal(mkdir(p, 0755), 0);
	create_sync("quiet/f");
	assert_int_equal(rfs_changes_read(p, NULL, collect, &g, c0), 0);
	struct sigaction sa = {.sa_handler = on_usr1}; /* no SA_RESTART */
	sigemptyset(&sa.sa_mask);
	assert_int_equal(sigaction(SIGUSR1, &sa, NULL), 0);
	int fd = open_rel("quiet");
	for (int i = 0; i <= RFS_CHANGES_WAITERS_MAX; i++) {
		struct waiter w = {.fd = fd, .p = wait_req(c0, 60000)};
		pthread_t t;
		assert_int_equal(pthread_create(&t, NULL, wait_ioctl, &w), 0);
		/* Until the signal lands while the ioctl waits. */
		while (!atomic_load(&w.done)) {
			pthread_kill(t, SIGUSR1);
			usleep(20000);
		}
		pthread_join(t, NULL);
		assert_int_equal(w.ret, -1);
		assert_int_equal(w.err, EINTR);
		free(w.p);
	}
	struct rfs_ioc_changes *q = wait_req(c0, 10);
	assert_int_equal(ioctl(fd, RFS_IOC_CHANGES, q), 0);
	assert_true(q->flags & RFS_IOC_CHANGES_WAITED);
	free(q);
	close(fd);
	signal(SIGUSR1, SIG_DFL);
}

/* RFS_CHANGES_WAITERS_MAX followers wait: one more is answered at once
 * without RFS_IOC_CHANGES_WAITED (it polls instead of holding a daemon
 * thread); once they are gone, a new one waits again. */
static void test_wait_busy(void **state)
{
	(void)state;
	NEED_MOUNT();
	enum { N = RFS_CHANGES_WAITERS_MAX + 1 };
	char c0[RFS_CURSOR_MAX], p[4400];
	struct got g = {0};
	path_of(p, sizeof(p), "busy");
	assert_int_equal(mkdir(p, 0755), 0);
	create_sync("busy/f");
	assert_int_equal(rfs_changes_read(p, NULL, collect, &g, c0), 0);
	struct sigaction sa = {.sa_handler = on_usr1};
	sigemptyset(&sa.sa_mask);
	assert_int_equal(sigaction(SIGUSR1, &sa, NULL), 0);
	int fd = open_rel("busy");
	static struct waiter w[N];
	pthread_t t[N];
	for (int i = 0; i < N; i++) {
		w[i] = (struct waiter){.fd = fd, .p = wait_req(c0, 60000)};
		assert_int_equal(pthread_create(&t[i], NULL, wait_ioctl, &w[i]), 0);
	}
	/* Nothing changes below busy and no waiter leaves before its
	 * signal: exactly one of the N finds every place taken. */
	int refused = -1;
	while (refused < 0) {
		for (int i = 0; i < N; i++)
			if (atomic_load(&w[i].done))
				refused = i;
		usleep(10000);
	}
	assert_int_equal(w[refused].ret, 0);
	assert_false(w[refused].p->flags & RFS_IOC_CHANGES_WAITED);
	assert_int_equal(w[refused].p->count, 0);
	assert_true(w[refused].p->done);
	for (int i = 0; i < N; i++) {
		while (!atomic_load(&w[i].done)) {
			pthread_kill(t[i], SIGUSR1);
			usleep(10000);
		}
		pthread_join(t[i], NULL);
		if (i != refused) {
			assert_int_equal(w[i].ret, -1);
			assert_int_equal(w[i].err, EINTR);
		}
		free(w[i].p);
	}
	struct rfs_ioc_changes *q = wait_req(c0, 10);
	assert_int_equal(ioctl(fd, RFS_IOC_CHANGES, q), 0);
	assert_true(q->flags & RFS_IOC_CHANGES_WAITED);
	free(q);
	close(fd);
	signal(SIGUSR1, SIG_DFL);
}

static void test_errors(void **state)
{
	(void)state;
	NEED_MOUNT();
	char c[RFS_CURSOR_MAX], p[4400];
	struct got g = {0};
	assert_int_equal(rfs_changes_read(g_dir, NULL, collect, &g, c), -ENOTTY);
	create_sync("file");
	path_of(p, sizeof(p), "file");
	assert_int_equal(rfs_changes_read(p, NULL, collect, &g, c), -ENOTDIR);
	path_of(p, sizeof(p), "missing");
	assert_int_equal(rfs_changes_read(p, NULL, collect, &g, c), -ENOENT);
	assert_int_equal(rfs_changes_read(g_mnt, "garbage", collect, &g, c), -EINVAL);
	assert_int_equal(
		rfs_changes_read(g_mnt,
				 "rfsj1:00000000000000000000000000000000:0000000000000001:0000000000000001",
				 collect, &g, c),
		-EXDEV);
	assert_int_equal(rfs_changes_follow(g_mnt, "garbage", 10, collect, &g, c), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_read),
		cmocka_unit_test(test_follow),
		cmocka_unit_test(test_wait_in_daemon),
		cmocka_unit_test(test_wait_interrupted),
		cmocka_unit_test(test_wait_busy),
		cmocka_unit_test(test_errors),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
