/*
 * Unit tests of a FUSE-over-io_uring ring entry's request rebuild and
 * reply packing (src/fuse/uring_req.h): the request comes out as
 * read(2) on /dev/fuse would give it, with the payload left where the
 * kernel put it; a header whose sizes do not add up is refused and
 * leaves the entry as it was; a reply lands in the entry's buffers.
 *
 * src/fuse is not part of libreflinkfs (it needs libfuse), but this
 * file of it needs only <linux/fuse.h>, so the test compiles it in.
 */
#include "../common/testutil.h"

#include <linux/fuse.h>

#include "fuse/uring_req.c"

#define CAP ((size_t)(1u << 20) + 4096)
#define HSZ sizeof(struct rfs_uring_req_header)

static char *ent_new(void)
{
	void *mem = NULL;
	assert_int_equal(posix_memalign(&mem, 4096, HSZ + CAP), 0);
	memset(mem, 0xa5, HSZ + CAP);
	return mem;
}

/* Fill the entry as the kernel does: in header, first argument, payload. */
static void ent_fill(char *mem, const struct fuse_in_header *in, const void *arg0, size_t arg0_sz,
		     const void *payload, size_t psz)
{
	struct rfs_uring_req_header *h = (void *)mem;
	memcpy(h->in_out, in, sizeof(*in));
	if (arg0_sz)
		memcpy(h->op_in, arg0, arg0_sz);
	h->ent.commit_id = in->unique;
	h->ent.payload_sz = (uint32_t)psz;
	if (psz)
		memcpy(mem + HSZ, payload, psz);
}

static void test_write_with_payload(void **state)
{
	(void)state;
	char *mem = ent_new();
	char data[4096];
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (char)(i * 7 + 3);
	struct fuse_write_in w = {.fh = 9, .offset = 8192, .size = sizeof(data), .flags = 2};
	struct fuse_in_header in = {.len = (uint32_t)(sizeof(in) + sizeof(w) + sizeof(data)),
				    .opcode = FUSE_WRITE, .unique = 77, .nodeid = 5, .uid = 1000};
	ent_fill(mem, &in, &w, sizeof(w), data, sizeof(data));
	char *start = NULL;
	ssize_t n = rfs_uring_req_rebuild(mem, CAP, &start);
	assert_int_equal(n, in.len);
	CHECK(start == mem + HSZ - sizeof(w) - sizeof(in),
	      "the request ends where the payload does (start %td bytes into the entry)", start - mem);
	struct fuse_in_header got;
	memcpy(&got, start, sizeof(got));
	CHECK(memcmp(&got, &in, sizeof(in)) == 0, "the in header comes first");
	struct fuse_write_in gw;
	memcpy(&gw, start + sizeof(in), sizeof(gw));
	assert_int_equal(gw.offset, 8192);
	assert_int_equal(gw.size, sizeof(data));
	assert_int_equal(gw.fh, 9);
	CHECK(memcmp(start + sizeof(in) + sizeof(w), data, sizeof(data)) == 0,
	      "the data follows the write argument, unmoved");
	free(mem);
}

static void test_no_payload(void **state)
{
	(void)state;
	char *mem = ent_new();
	/* GETATTR: only the first argument. */
	struct fuse_getattr_in ga = {.getattr_flags = FUSE_GETATTR_FH, .fh = 42};
	struct fuse_in_header in = {.len = (uint32_t)(sizeof(in) + sizeof(ga)), .opcode = FUSE_GETATTR,
				    .unique = 1234, .nodeid = 1};
	ent_fill(mem, &in, &ga, sizeof(ga), NULL, 0);
	char *start = NULL;
	ssize_t n = rfs_uring_req_rebuild(mem, CAP, &start);
	assert_int_equal(n, sizeof(in) + sizeof(ga));
	assert_ptr_equal(start + n, mem + HSZ);
	CHECK(memcmp(start, &in, sizeof(in)) == 0, "header");
	CHECK(memcmp(start + sizeof(in), &ga, sizeof(ga)) == 0, "argument");

	/* STATFS: the header alone. */
	struct fuse_in_header st = {.len = sizeof(st), .opcode = FUSE_STATFS, .unique = 1236, .nodeid = 1};
	ent_fill(mem, &st, NULL, 0, NULL, 0);
	n = rfs_uring_req_rebuild(mem, CAP, &start);
	assert_int_equal(n, sizeof(st));
	assert_ptr_equal(start, mem + HSZ - sizeof(st));
	CHECK(memcmp(start, &st, sizeof(st)) == 0, "a header alone");
	free(mem);
}

/* LOOKUP since protocol 7.42: an empty first argument, the name in the
 * payload. */
static void test_payload_only(void **state)
{
	(void)state;
	char *mem = ent_new();
	const char name[] = "some-file.txt";
	struct fuse_in_header in = {.len = (uint32_t)(sizeof(in) + sizeof(name)), .opcode = FUSE_LOOKUP,
				    .unique = 5, .nodeid = 1};
	ent_fill(mem, &in, NULL, 0, name, sizeof(name));
	char *start = NULL;
	ssize_t n = rfs_uring_req_rebuild(mem, CAP, &start);
	assert_int_equal(n, in.len);
	assert_ptr_equal(start, mem + HSZ - sizeof(in));
	assert_string_equal(start + sizeof(in), name);
	free(mem);
}

/* A first argument of the whole op_in: op_in and its destination overlap. */
static void test_largest_first_argument(void **state)
{
	(void)state;
	char *mem = ent_new();
	char arg[RFS_URING_OP_IN_SZ];
	for (size_t i = 0; i < sizeof(arg); i++)
		arg[i] = (char)(255 - i);
	char data[100];
	memset(data, 'd', sizeof(data));
	struct fuse_in_header in = {.len = (uint32_t)(sizeof(in) + sizeof(arg) + sizeof(data)),
				    .opcode = FUSE_SETXATTR, .unique = 8};
	ent_fill(mem, &in, arg, sizeof(arg), data, sizeof(data));
	char *start = NULL;
	assert_int_equal(rfs_uring_req_rebuild(mem, CAP, &start), in.len);
	CHECK(memcmp(start, &in, sizeof(in)) == 0, "header");
	CHECK(memcmp(start + sizeof(in), arg, sizeof(arg)) == 0, "an argument that overlapped its place");
	CHECK(memcmp(start + sizeof(in) + sizeof(arg), data, sizeof(data)) == 0, "payload");
	free(mem);
}

/* Sizes that do not add up: refused, nothing moved. */
static void test_malformed(void **state)
{
	(void)state;
	char *mem = ent_new();
	char *copy = malloc(HSZ + 8192);
	assert_non_null(copy);
	char data[64] = "x";
	struct {
		const char *what;
		uint32_t len;
		uint32_t psz;
	} cases[] = {
		{"len shorter than the header", 8, 0},
		{"len shorter than header and payload", sizeof(struct fuse_in_header) + 10, sizeof(data)},
		{"a first argument longer than op_in",
		 sizeof(struct fuse_in_header) + RFS_URING_OP_IN_SZ + 1 + sizeof(data), sizeof(data)},
		{"len far beyond the buffers", UINT32_MAX, sizeof(data)},
		{"a payload larger than the buffer", sizeof(struct fuse_in_header) + (uint32_t)CAP + 1,
		 (uint32_t)CAP + 1},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct fuse_in_header in = {.len = cases[i].len, .opcode = FUSE_WRITE, .unique = 100 + i};
		ent_fill(mem, &in, data, 40, data, sizeof(data));
		((struct rfs_uring_req_header *)mem)->ent.payload_sz = cases[i].psz;
		memcpy(copy, mem, HSZ + 8192);
		char *start = NULL;
		ssize_t n = rfs_uring_req_rebuild(mem, CAP, &start);
		CHECK(n == -EBADMSG, "%s: refused (got %zd)", cases[i].what, n);
		CHECK(start == NULL, "%s: no start", cases[i].what);
		CHECK(memcmp(copy, mem, HSZ + 8192) == 0, "%s: the entry is left as it was", cases[i].what);
		struct fuse_in_header h;
		memcpy(&h, mem, sizeof(h));
		assert_int_equal(h.unique, 100 + i);
	}
	free(copy);
	free(mem);
}

static void test_reply(void **state)
{
	(void)state;
	char *mem = ent_new();
	struct rfs_uring_req_header *h = (void *)mem;
	struct fuse_out_header out = {.len = 0, .error = 0, .unique = 77};
	struct fuse_write_out wo = {.size = 4096};
	char tail[10] = "0123456789";
	struct iovec iov[3] = {{&out, sizeof(out)}, {&wo, sizeof(wo)}, {tail, sizeof(tail)}};
	ssize_t n = rfs_uring_reply_pack(mem, CAP, iov, 3);
	assert_int_equal(n, sizeof(out) + sizeof(wo) + sizeof(tail));
	struct fuse_out_header got;
	memcpy(&got, h->in_out, sizeof(got));
	assert_int_equal(got.len, n);
	assert_int_equal(got.error, 0);
	assert_int_equal(got.unique, 77);
	assert_int_equal(h->ent.payload_sz, sizeof(wo) + sizeof(tail));
	CHECK(memcmp(mem + HSZ, &wo, sizeof(wo)) == 0, "the first part opens the payload");
	CHECK(memcmp(mem + HSZ + sizeof(wo), tail, sizeof(tail)) == 0, "the second follows");

	/* An error: the header alone. */
	struct fuse_out_header err = {.error = -ENOENT, .unique = 78};
	iov[0] = (struct iovec){&err, sizeof(err)};
	assert_int_equal(rfs_uring_reply_pack(mem, CAP, iov, 1), sizeof(err));
	memcpy(&got, h->in_out, sizeof(got));
	assert_int_equal(got.len, sizeof(err));
	assert_int_equal(got.error, -ENOENT);
	assert_int_equal(h->ent.payload_sz, 0);

	/* A part already in the payload (moved, not copied over itself). */
	memcpy(mem + HSZ + 100, "moved", 5);
	iov[0] = (struct iovec){&out, sizeof(out)};
	iov[1] = (struct iovec){mem + HSZ + 100, 5};
	assert_int_equal(rfs_uring_reply_pack(mem, CAP, iov, 2), sizeof(out) + 5);
	CHECK(memcmp(mem + HSZ, "moved", 5) == 0, "a part from the payload itself");

	/* Too large for the buffer: an EIO without payload. */
	char *big = malloc(CAP + 1);
	assert_non_null(big);
	iov[1] = (struct iovec){big, CAP + 1};
	assert_int_equal(rfs_uring_reply_pack(mem, CAP, iov, 2), -EMSGSIZE);
	memcpy(&got, h->in_out, sizeof(got));
	assert_int_equal(got.error, -EIO);
	assert_int_equal(got.len, sizeof(got));
	assert_int_equal(got.unique, 77);
	assert_int_equal(h->ent.payload_sz, 0);
	free(big);

	/* No out header: nothing written. */
	memcpy(&got, h->in_out, sizeof(got));
	iov[0] = (struct iovec){&out, sizeof(out) - 1};
	assert_int_equal(rfs_uring_reply_pack(mem, CAP, iov, 1), -EINVAL);
	assert_int_equal(rfs_uring_reply_pack(mem, CAP, iov, 0), -EINVAL);
	CHECK(memcmp(&got, h->in_out, sizeof(got)) == 0, "a refused reply leaves the entry");
	free(mem);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_write_with_payload),
		cmocka_unit_test(test_no_payload),
		cmocka_unit_test(test_payload_only),
		cmocka_unit_test(test_largest_first_argument),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_reply),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
