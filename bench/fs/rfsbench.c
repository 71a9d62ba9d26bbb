/*
 * rfsbench: small I/O helpers for bench/fs/run.sh (the filesystem
 * benchmarks).  Plain POSIX, no project headers: it runs the same code on
 * the reflinkfs mount, on XFS and on the native backing filesystem.
 *
 *   rfsbench fill FILE SIZE
 *       create/truncate FILE and write SIZE bytes sequentially in 1 MiB
 *       writes of pseudo-random data (one extent chain), then fsync.
 *   rfsbench stride FILE SIZE STRIDE LEN
 *       pwrite LEN bytes at offsets 0, STRIDE, 2*STRIDE, ... below SIZE
 *       (FILE is created if missing and extended to SIZE first, so
 *       stride on a new file makes a sparse file of SIZE/STRIDE data
 *       regions; on an existing file it overwrites every STRIDE-th
 *       block), then fsync.  Data differs from what fill writes.
 *   rfsbench reader FILE READYFILE
 *       loop: pread 4 KiB at a random 4 KiB-aligned offset of FILE, with
 *       O_DIRECT when the filesystem accepts it, else a normal read after
 *       posix_fadvise(DONTNEED) of that block.  Creates READYFILE after
 *       the first read; stops on SIGUSR1 or SIGTERM and prints
 *       "max_us=N reads=N median_us=N p99_us=N p999_us=N over_1ms=N
 *       direct=0|1" on stdout (over_1ms: reads that took 1 ms or more).
 *   rfsbench small create|stat|unlink DIR N [SIZE]
 *       create: N files DIR/fNNNNNNN of SIZE bytes (default 1024)
 *               (open O_CREAT|O_EXCL, write, close), then syncfs and
 *               fsync of DIR;
 *       stat:   lstat each of them;
 *       unlink: unlink each of them, then syncfs and fsync of DIR.
 *       Prints the elapsed time in nanoseconds on stdout (the syncs
 *       included), and the part spent in them on stderr.
 *   rfsbench samplecmp A B N
 *       compare sizes and N pseudo-random 4 KiB blocks (plus the first and
 *       last) of A and B; exit 1 on a difference.
 *   rfsbench allocated FILE
 *       prints st_blocks * 512 (allocated bytes).
 *   rfsbench used PATH
 *       prints the used bytes of the filesystem holding PATH (statvfs:
 *       (f_blocks - f_bfree) * f_frsize).
 *   rfsbench mktree DIR NDIRS [MAXSIZE]
 *       make a tree shaped like /usr/share/doc under DIR (created): NDIRS
 *       package directories, each with 2-4 files, a subdirectory of 5
 *       files in one of 5, a symlink in one of 10 (about 4.8 entries per
 *       package directory); file sizes log-uniform from 64 bytes to
 *       MAXSIZE (default 256K).  Deterministic.  Prints "entries=N
 *       bytes=N" on stdout.
 *   rfsbench reqs MNT [BEFORE]
 *       the FUSE requests the reflinkfs daemon of MNT received
 *       (RFS_IOC_REQ_STATS, on MNT opened as a directory).  Without
 *       BEFORE: one line of counts and times per opcode (save it to a
 *       file).  With BEFORE (such a file): the requests since then,
 *       "total=N OP=N ...", minus the probes' own requests, then (from a
 *       daemon with RFS_IOC_REQ_TIMES) "| daemon=S OP:Tus ...": the
 *       seconds the daemon spent handling them (read to reply, not the
 *       kernel's round trip), how often a request was read by another
 *       worker than the one before (switches) and the mean time per
 *       request of each opcode.
 *   rfsbench readwaits MNT [start|stop]
 *       where the reflinkfs daemon of MNT made READs wait since counting
 *       started (RFS_IOC_READ_WAITS; "start": empty the counts and count
 *       from now on, "stop": stop counting): one line, "reads=N
 *       over_1ms=N waited_1ms=N offcpu_1ms=N max_us=N max_cpu_us=N
 *       max_read_waits_us=POOL/SHARD/SLAB/NODES
 *       max_waits_us=POOL/SHARD/SLAB/NODES
 *       sum_waits_us=POOL/SHARD/SLAB/NODES" (max_us: the longest READ,
 *       max_cpu_us and max_read_waits_us: its time on the CPU and its
 *       lock waits; sum_waits_us: all READs' waits, per kind of lock),
 *       then one line per holder of the pool's write lock,
 *       "wrlock NAME spans=N max_us=N over_1ms=N total_us=N".
 *
 * SIZE, STRIDE and LEN take the suffixes K, M, G, T (powers of 1024).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#define BLK 4096u

static void die(const char *what, const char *path)
{
	fprintf(stderr, "rfsbench: %s %s: %s\n", what, path ? path : "",
		strerror(errno));
	exit(2);
}

static uint64_t parse_size(const char *s)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s) {
		fprintf(stderr, "rfsbench: bad size '%s'\n", s);
		exit(2);
	}
	switch (*end) {
	case 'T': case 't': v <<= 10; /* fall through */
	case 'G': case 'g': v <<= 10; /* fall through */
	case 'M': case 'm': v <<= 10; /* fall through */
	case 'K': case 'k': v <<= 10; end++; break;
	case '\0': break;
	default:
		fprintf(stderr, "rfsbench: bad size '%s'\n", s);
		exit(2);
	}
	return v;
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t splitmix(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Fill buf with pseudo-random words that depend on seed and off, so every
 * block is different (no dedup or compression can shortcut the writes). */
static void pattern(void *buf, size_t len, uint64_t seed, uint64_t off)
{
	uint64_t *w = buf;
	uint64_t s = seed ^ (off * 0x2545f4914f6cdd1dull);
	for (size_t i = 0; i < len / 8; i++)
		w[i] = splitmix(&s);
}

static void *xalign(size_t len)
{
	void *p;
	if (posix_memalign(&p, BLK, len))
		die("posix_memalign", NULL);
	return p;
}

static void write_all(int fd, const char *buf, size_t len, uint64_t off,
		      const char *path)
{
	while (len) {
		ssize_t n = pwrite(fd, buf, len, (off_t)off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("pwrite", path);
		}
		buf += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
}

static int cmd_fill(const char *path, uint64_t size)
{
	const size_t chunk = 1u << 20;
	char *buf = xalign(chunk);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		die("open", path);
	uint64_t t0 = now_ns();
	for (uint64_t off = 0; off < size; off += chunk) {
		size_t len = size - off < chunk ? (size_t)(size - off) : chunk;
		pattern(buf, len, 1, off);
		write_all(fd, buf, len, off, path);
	}
	if (fsync(fd))
		die("fsync", path);
	close(fd);
	double s = (double)(now_ns() - t0) / 1e9;
	fprintf(stderr, "rfsbench: fill %s: %" PRIu64 " MiB in %.2f s (%.0f MiB/s)\n",
		path, size >> 20, s, (double)(size >> 20) / s);
	return 0;
}

static int cmd_stride(const char *path, uint64_t size, uint64_t stride,
		      uint64_t len)
{
	if (!stride || !len || len > stride) {
		fprintf(stderr, "rfsbench: stride needs 0 < LEN <= STRIDE\n");
		return 2;
	}
	char *buf = xalign(len);
	int fd = open(path, O_WRONLY | O_CREAT, 0644);
	if (fd < 0)
		die("open", path);
	struct stat st;
	if (fstat(fd, &st))
		die("fstat", path);
	if ((uint64_t)st.st_size < size && ftruncate(fd, (off_t)size))
		die("ftruncate", path);
	uint64_t t0 = now_ns(), n = 0;
	for (uint64_t off = 0; off + len <= size; off += stride, n++) {
		pattern(buf, len, 2, off);
		write_all(fd, buf, len, off, path);
	}
	uint64_t t1 = now_ns();
	if (fsync(fd))
		die("fsync", path);
	close(fd);
	uint64_t t2 = now_ns();
	fprintf(stderr,
		"rfsbench: stride %s: %" PRIu64 " writes of %" PRIu64
		" B in %.2f s, fsync %.2f s\n",
		path, n, len, (double)(t1 - t0) / 1e9, (double)(t2 - t1) / 1e9);
	return 0;
}

static volatile sig_atomic_t stop;
static void on_stop(int sig)
{
	(void)sig;
	stop = 1;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

static int cmd_reader(const char *path, const char *ready)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_stop; /* no SA_RESTART: a blocked read returns EINTR */
	sigaction(SIGUSR1, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	char *buf = xalign(BLK);
	int direct = 1;
	int fd = open(path, O_RDONLY | O_DIRECT);
	if (fd >= 0) {
		if (pread(fd, buf, BLK, 0) < 0) {
			close(fd);
			fd = -1;
		}
	}
	if (fd < 0) {
		direct = 0;
		fd = open(path, O_RDONLY);
		if (fd < 0)
			die("open", path);
	}
	struct stat st;
	if (fstat(fd, &st))
		die("fstat", path);
	uint64_t nblk = (uint64_t)st.st_size / BLK;
	if (!nblk) {
		fprintf(stderr, "rfsbench: reader: %s is empty\n", path);
		return 2;
	}
	size_t cap = 1u << 20, cnt = 0;
	uint32_t *lat = malloc(cap * sizeof *lat);
	if (!lat)
		die("malloc", NULL);
	uint64_t seed = 42, maxns = 0;
	int announced = 0;
	while (!stop) {
		uint64_t off = (splitmix(&seed) % nblk) * BLK;
		if (!direct)
			posix_fadvise(fd, (off_t)off, BLK, POSIX_FADV_DONTNEED);
		uint64_t t0 = now_ns();
		ssize_t n = pread(fd, buf, BLK, (off_t)off);
		uint64_t dt = now_ns() - t0;
		if (n < 0 && errno == EINTR) {
			/* interrupted by the stop signal: it still waited dt */
			if (dt > maxns)
				maxns = dt;
			break;
		}
		if (n < 0)
			die("pread", path);
		if (dt > maxns)
			maxns = dt;
		if (cnt == cap) {
			cap *= 2;
			lat = realloc(lat, cap * sizeof *lat);
			if (!lat)
				die("realloc", NULL);
		}
		lat[cnt++] = dt / 1000 > UINT32_MAX ? UINT32_MAX : (uint32_t)(dt / 1000);
		if (!announced) {
			int rfd = open(ready, O_WRONLY | O_CREAT, 0644);
			if (rfd < 0)
				die("open", ready);
			close(rfd);
			announced = 1;
		}
	}
	/* The maximum alone is one outlier, mostly the machine's scheduling:
	 * the tail percentiles and the count over 1 ms say how often. */
	uint32_t median = 0, p99 = 0, p999 = 0;
	size_t over_1ms = 0;
	if (cnt) {
		qsort(lat, cnt, sizeof *lat, cmp_u32);
		median = lat[cnt / 2];
		p99 = lat[cnt - 1 - cnt / 100];
		p999 = lat[cnt - 1 - cnt / 1000];
		for (size_t i = cnt; i > 0 && lat[i - 1] >= 1000; i--)
			over_1ms++;
	}
	printf("max_us=%" PRIu64 " reads=%zu median_us=%u p99_us=%u "
	       "p999_us=%u over_1ms=%zu direct=%d\n",
	       maxns / 1000, cnt, median, p99, p999, over_1ms, direct);
	free(lat);
	return 0;
}

static int cmd_small(const char *op, const char *dir, uint64_t n,
		     uint64_t size)
{
	char path[4096];
	char *buf = calloc(1, size ? size : 1);
	if (!buf)
		die("calloc", NULL);
	memset(buf, 'x', size);
	int dfd = open(dir, O_RDONLY | O_DIRECTORY);
	if (dfd < 0)
		die("open", dir);
	int creating = !strcmp(op, "create"), stating = !strcmp(op, "stat"),
	    unlinking = !strcmp(op, "unlink");
	if (!creating && !stating && !unlinking) {
		fprintf(stderr, "rfsbench: small: unknown op '%s'\n", op);
		return 2;
	}
	uint64_t t0 = now_ns();
	for (uint64_t i = 0; i < n; i++) {
		snprintf(path, sizeof path, "f%07" PRIu64, i);
		if (creating) {
			int fd = openat(dfd, path, O_WRONLY | O_CREAT | O_EXCL, 0644);
			if (fd < 0)
				die("create", path);
			if (size)
				write_all(fd, buf, size, 0, path);
			if (close(fd))
				die("close", path);
		} else if (stating) {
			struct stat st;
			if (fstatat(dfd, path, &st, AT_SYMLINK_NOFOLLOW))
				die("stat", path);
			if ((uint64_t)st.st_size != size) {
				fprintf(stderr, "rfsbench: %s/%s: size %lld, expected %" PRIu64 "\n",
					dir, path, (long long)st.st_size, size);
				return 1;
			}
		} else {
			if (unlinkat(dfd, path, 0))
				die("unlink", path);
		}
	}
	uint64_t t1 = now_ns();
	/* syncfs for the native side; fsync of the directory too, because the
	 * kernel does not pass syncfs on to an ordinary FUSE daemon (only to
	 * virtiofs), while fsync of a directory reaches it as FSYNCDIR. */
	if (!stating && (syncfs(dfd) || fsync(dfd)))
		die("syncfs/fsync", dir);
	uint64_t t2 = now_ns();
	close(dfd);
	fprintf(stderr, "rfsbench: small %s %s: %" PRIu64 " files, %.3f s + sync %.3f s\n",
		op, dir, n, (double)(t1 - t0) / 1e9, (double)(t2 - t1) / 1e9);
	printf("%" PRIu64 "\n", t2 - t0);
	return 0;
}

static int read_block(int fd, char *buf, uint64_t off, const char *path)
{
	ssize_t n = pread(fd, buf, BLK, (off_t)off);
	if (n < 0)
		die("pread", path);
	return (int)n;
}

static int cmd_samplecmp(const char *a, const char *b, uint64_t n)
{
	int fa = open(a, O_RDONLY), fb = open(b, O_RDONLY);
	if (fa < 0)
		die("open", a);
	if (fb < 0)
		die("open", b);
	struct stat sa, sb;
	if (fstat(fa, &sa) || fstat(fb, &sb))
		die("fstat", a);
	if (sa.st_size != sb.st_size) {
		fprintf(stderr, "rfsbench: samplecmp: %s is %lld bytes, %s is %lld\n",
			a, (long long)sa.st_size, b, (long long)sb.st_size);
		return 1;
	}
	uint64_t nblk = ((uint64_t)sa.st_size + BLK - 1) / BLK, seed = 7;
	char ba[BLK], bb[BLK];
	for (uint64_t i = 0; nblk && i < n + 2; i++) {
		uint64_t blk = i == 0 ? 0 : i == 1 ? nblk - 1 : splitmix(&seed) % nblk;
		int la = read_block(fa, ba, blk * BLK, a);
		int lb = read_block(fb, bb, blk * BLK, b);
		if (la != lb || memcmp(ba, bb, (size_t)la)) {
			fprintf(stderr, "rfsbench: samplecmp: %s and %s differ in block %" PRIu64 "\n",
				a, b, blk);
			return 1;
		}
	}
	close(fa);
	close(fb);
	return 0;
}

/* ---- mktree ---- */

static void mkfile(const char *path, uint64_t size, uint64_t seed)
{
	static char buf[1 << 18];
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
	if (fd < 0)
		die("create", path);
	if (size > sizeof(buf))
		size = sizeof(buf);
	pattern(buf, (size + 7) & ~(size_t)7, seed, 0);
	write_all(fd, buf, size, 0, path);
	close(fd);
}

/* Log-uniform in [64, max]: many small files, a few large ones. */
static uint64_t doc_size(uint64_t *s, uint64_t max)
{
	double u = (double)(splitmix(s) >> 11) / 9007199254740992.0;
	double lo = 6.0, hi = 0; /* log2(64) */
	for (uint64_t m = max; m > 1; m >>= 1)
		hi += 1;
	/* 2^x without libm: the integer part as a shift, the fraction
	 * linear between two powers of two */
	double x = lo + u * (hi - lo);
	unsigned k = (unsigned)x;
	return (uint64_t)((double)(1ull << k) * (1.0 + (x - k)));
}

static int cmd_mktree(const char *dir, uint64_t ndirs, uint64_t max)
{
	static const char *names[] = {"copyright", "changelog.Debian.gz", "README.md",
				      "NEWS.gz"};
	char p[4096];
	uint64_t s = 42, entries = 0, bytes = 0;
	if (mkdir(dir, 0755))
		die("mkdir", dir);
	for (uint64_t d = 0; d < ndirs; d++) {
		snprintf(p, sizeof(p), "%s/pkg-%05llu", dir, (unsigned long long)d);
		if (mkdir(p, 0755))
			die("mkdir", p);
		entries++;
		unsigned nf = 2 + (unsigned)(splitmix(&s) % 3);
		for (unsigned f = 0; f < nf; f++) {
			snprintf(p, sizeof(p), "%s/pkg-%05llu/%s", dir, (unsigned long long)d,
				 names[f]);
			uint64_t sz = doc_size(&s, max);
			mkfile(p, sz, splitmix(&s));
			entries++;
			bytes += sz;
		}
		if (splitmix(&s) % 5 == 0) {
			snprintf(p, sizeof(p), "%s/pkg-%05llu/examples", dir, (unsigned long long)d);
			if (mkdir(p, 0755))
				die("mkdir", p);
			entries++;
			for (unsigned f = 0; f < 5; f++) {
				snprintf(p, sizeof(p), "%s/pkg-%05llu/examples/ex%u.c", dir,
					 (unsigned long long)d, f);
				uint64_t sz = doc_size(&s, max);
				mkfile(p, sz, splitmix(&s));
				entries++;
				bytes += sz;
			}
		}
		if (d && splitmix(&s) % 10 == 0) {
			char t[64];
			snprintf(t, sizeof(t), "../pkg-%05llu/copyright", (unsigned long long)d - 1);
			snprintf(p, sizeof(p), "%s/pkg-%05llu/copyright.link", dir,
				 (unsigned long long)d);
			if (symlink(t, p))
				die("symlink", p);
			entries++;
		}
	}
	printf("entries=%llu bytes=%llu\n", (unsigned long long)entries,
	       (unsigned long long)bytes);
	return 0;
}

/* ---- reqs: mirrors include/reflinkfs/fs.h (RFS_IOC_REQ_STATS, _TIMES) ---- */

#define REQ_OPCODES 64
struct req_stats {
	uint64_t count[REQ_OPCODES];
};
#define IOC_REQ_STATS _IOR('R', 40, struct req_stats)
struct req_times {
	uint64_t ns[REQ_OPCODES];
	uint64_t switches;
};
#define IOC_REQ_TIMES _IOR('R', 41, struct req_times)

/* FUSE opcodes (<linux/fuse.h>) by number. */
static const char *const op_names[REQ_OPCODES] = {
	[1] = "LOOKUP", [2] = "FORGET", [3] = "GETATTR", [4] = "SETATTR",
	[5] = "READLINK", [6] = "SYMLINK", [8] = "MKNOD", [9] = "MKDIR",
	[10] = "UNLINK", [11] = "RMDIR", [12] = "RENAME", [13] = "LINK",
	[14] = "OPEN", [15] = "READ", [16] = "WRITE", [17] = "STATFS",
	[18] = "RELEASE", [20] = "FSYNC", [21] = "SETXATTR", [22] = "GETXATTR",
	[23] = "LISTXATTR", [24] = "REMOVEXATTR", [25] = "FLUSH", [26] = "INIT",
	[27] = "OPENDIR", [28] = "READDIR", [29] = "RELEASEDIR", [30] = "FSYNCDIR",
	[31] = "GETLK", [32] = "SETLK", [33] = "SETLKW", [34] = "ACCESS",
	[35] = "CREATE", [36] = "INTERRUPT", [37] = "BMAP", [38] = "DESTROY",
	[39] = "IOCTL", [40] = "POLL", [42] = "BATCH_FORGET", [43] = "FALLOCATE",
	[44] = "READDIRPLUS", [45] = "RENAME2", [46] = "LSEEK",
	[47] = "COPY_FILE_RANGE", [50] = "SYNCFS", [51] = "TMPFILE", [52] = "STATX",
	[63] = "OTHER",
};

/* Counts, then times in ns (zeros from a daemon without RFS_IOC_REQ_TIMES). */
static int cmd_reqs(const char *mnt, const char *before)
{
	struct req_stats now, then;
	struct req_times tnow, tthen;
	memset(&tnow, 0, sizeof(tnow));
	memset(&tthen, 0, sizeof(tthen));
	int fd = open(mnt, O_RDONLY | O_DIRECTORY);
	if (fd < 0)
		die("open", mnt);
	if (ioctl(fd, IOC_REQ_STATS, &now))
		die("ioctl RFS_IOC_REQ_STATS on", mnt);
	if (ioctl(fd, IOC_REQ_TIMES, &tnow))
		memset(&tnow, 0, sizeof(tnow));
	close(fd);
	if (!before) {
		for (unsigned i = 0; i < REQ_OPCODES; i++)
			printf("%llu ", (unsigned long long)now.count[i]);
		for (unsigned i = 0; i < REQ_OPCODES; i++)
			printf("%llu ", (unsigned long long)tnow.ns[i]);
		printf("%llu\n", (unsigned long long)tnow.switches);
		return 0;
	}
	FILE *f = fopen(before, "r");
	if (!f)
		die("open", before);
	for (unsigned i = 0; i < 2 * REQ_OPCODES + 1; i++) {
		unsigned long long v;
		if (fscanf(f, "%llu", &v) != 1) {
			if (i == REQ_OPCODES)
				break; /* a line of counts only */
			fprintf(stderr, "rfsbench: %s: not a saved `rfsbench reqs` line\n", before);
			exit(2);
		}
		if (i < REQ_OPCODES)
			then.count[i] = v;
		else if (i < 2 * REQ_OPCODES)
			tthen.ns[i - REQ_OPCODES] = v;
		else
			tthen.switches = v;
	}
	fclose(f);
	/* The probes' own requests since the earlier line: this one's
	 * REQ_STATS and the earlier one's REQ_TIMES (counted also by a daemon
	 * that refuses it), and the OPENDIR + RELEASEDIR of a daemon that
	 * still answers them (the earlier probe's RELEASEDIR). */
	now.count[27] -= now.count[27] > then.count[27];
	now.count[39] -= now.count[39] > then.count[39];
	now.count[39] -= now.count[39] > then.count[39];
	now.count[29] -= now.count[29] > then.count[29];
	uint64_t total = 0, total_ns = 0;
	for (unsigned i = 0; i < REQ_OPCODES; i++) {
		total += now.count[i] - then.count[i];
		if (i != 39)
			total_ns += tnow.ns[i] - tthen.ns[i];
	}
	printf("total=%llu", (unsigned long long)total);
	for (unsigned i = 0; i < REQ_OPCODES; i++)
		if (now.count[i] != then.count[i])
			printf(" %s=%llu", op_names[i] ? op_names[i] : "?",
			       (unsigned long long)(now.count[i] - then.count[i]));
	/* Where the daemon spent its time on them: the sum, and the mean
	 * per request of each opcode (the probes' ioctls left out). */
	if (total_ns) {
		printf(" | daemon=%.3fs switches=%llu", (double)total_ns / 1e9,
		       (unsigned long long)(tnow.switches - tthen.switches));
		for (unsigned i = 0; i < REQ_OPCODES; i++) {
			uint64_t n = now.count[i] - then.count[i];
			if (n && i != 39 && tnow.ns[i] != tthen.ns[i])
				printf(" %s:%.1fus", op_names[i] ? op_names[i] : "?",
				       (double)(tnow.ns[i] - tthen.ns[i]) / 1e3 / (double)n);
		}
	}
	printf("\n");
	return 0;
}

/* ---- readwaits: mirrors include/reflinkfs/fs.h (RFS_IOC_READ_WAITS) ---- */

#define LOCKW_KINDS 4 /* pool, shard, slab, nodes */
#define WRHOLD_SLOTS 8
struct wrhold {
	char what[24];
	uint64_t count, total_ns, max_ns, over_1ms;
};
struct read_waits {
	uint32_t flags, on;
	uint64_t reads, over_1ms, waited_1ms, offcpu_1ms, max_ns, max_cpu_ns;
	uint64_t max_read_wait_ns[LOCKW_KINDS], max_wait_ns[LOCKW_KINDS],
		sum_wait_ns[LOCKW_KINDS];
	struct wrhold wr[WRHOLD_SLOTS];
};
#define IOC_READ_WAITS _IOWR('R', 44, struct read_waits)

static void print_kinds(const char *name, const uint64_t *ns)
{
	printf(" %s=%llu/%llu/%llu/%llu", name, (unsigned long long)(ns[0] / 1000),
	       (unsigned long long)(ns[1] / 1000), (unsigned long long)(ns[2] / 1000),
	       (unsigned long long)(ns[3] / 1000));
}

static int cmd_readwaits(const char *mnt, const char *what)
{
	struct read_waits w;
	memset(&w, 0, sizeof w);
	/* RFS_READ_WAITS_RESET 1, _ON 2, _OFF 4 */
	w.flags = !what ? 0 : !strcmp(what, "start") ? 1 | 2 : 4;
	int fd = open(mnt, O_RDONLY | O_DIRECTORY);
	if (fd < 0)
		die("open", mnt);
	if (ioctl(fd, IOC_READ_WAITS, &w))
		die("ioctl RFS_IOC_READ_WAITS on", mnt);
	close(fd);
	printf("reads=%llu over_1ms=%llu waited_1ms=%llu offcpu_1ms=%llu max_us=%llu max_cpu_us=%llu",
	       (unsigned long long)w.reads, (unsigned long long)w.over_1ms,
	       (unsigned long long)w.waited_1ms, (unsigned long long)w.offcpu_1ms,
	       (unsigned long long)(w.max_ns / 1000), (unsigned long long)(w.max_cpu_ns / 1000));
	print_kinds("max_read_waits_us", w.max_read_wait_ns);
	print_kinds("max_waits_us", w.max_wait_ns);
	print_kinds("sum_waits_us", w.sum_wait_ns);
	printf("\n");
	for (unsigned i = 0; i < WRHOLD_SLOTS; i++)
		if (w.wr[i].what[0])
			printf("wrlock %.24s spans=%llu max_us=%llu over_1ms=%llu total_us=%llu\n",
			       w.wr[i].what, (unsigned long long)w.wr[i].count,
			       (unsigned long long)(w.wr[i].max_ns / 1000),
			       (unsigned long long)w.wr[i].over_1ms,
			       (unsigned long long)(w.wr[i].total_ns / 1000));
	return 0;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: rfsbench fill FILE SIZE | stride FILE SIZE STRIDE LEN |\n"
		"       reader FILE READYFILE | small create|stat|unlink DIR N [SIZE] |\n"
		"       samplecmp A B N | allocated FILE | used PATH |\n"
		"       mktree DIR NDIRS [MAXSIZE] | reqs MNT [BEFORE] |\n"
		"       readwaits MNT [start|stop]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	if (argc < 3)
		usage();
	const char *cmd = argv[1];
	if (!strcmp(cmd, "fill") && argc == 4)
		return cmd_fill(argv[2], parse_size(argv[3]));
	if (!strcmp(cmd, "stride") && argc == 6)
		return cmd_stride(argv[2], parse_size(argv[3]),
				  parse_size(argv[4]), parse_size(argv[5]));
	if (!strcmp(cmd, "reader") && argc == 4)
		return cmd_reader(argv[2], argv[3]);
	if (!strcmp(cmd, "small") && (argc == 5 || argc == 6))
		return cmd_small(argv[2], argv[3], parse_size(argv[4]),
				 argc == 6 ? parse_size(argv[5]) : 1024);
	if (!strcmp(cmd, "samplecmp") && argc == 5)
		return cmd_samplecmp(argv[2], argv[3], parse_size(argv[4]));
	if (!strcmp(cmd, "allocated") && argc == 3) {
		struct stat st;
		if (stat(argv[2], &st))
			die("stat", argv[2]);
		printf("%llu\n", (unsigned long long)st.st_blocks * 512ull);
		return 0;
	}
	if (!strcmp(cmd, "mktree") && (argc == 4 || argc == 5))
		return cmd_mktree(argv[2], parse_size(argv[3]),
				  argc == 5 ? parse_size(argv[4]) : 256 << 10);
	if (!strcmp(cmd, "readwaits") &&
	    (argc == 3 || (argc == 4 && (!strcmp(argv[3], "start") || !strcmp(argv[3], "stop")))))
		return cmd_readwaits(argv[2], argc == 4 ? argv[3] : NULL);
	if (!strcmp(cmd, "reqs") && (argc == 3 || argc == 4))
		return cmd_reqs(argv[2], argc == 4 ? argv[3] : NULL);
	if (!strcmp(cmd, "used") && argc == 3) {
		struct statvfs sv;
		if (statvfs(argv[2], &sv))
			die("statvfs", argv[2]);
		printf("%llu\n", (unsigned long long)(sv.f_blocks - sv.f_bfree) *
					 (unsigned long long)sv.f_frsize);
		return 0;
	}
	usage();
	return 2;
}
