/* Slotted-page operations on one B+tree node (layout in node.h). */
#include "tree/node.h"

#include <assert.h>

#include "reflinkfs/tree.h"

void node_init(uint8_t *d)
{
	struct node_hdr *h = node_hdr(d);
	h->nitems = 0;
	h->data_start = RFS_BLOCK_SIZE;
	h->frag = 0;
	h->reserved = 0;
}

unsigned node_search(const uint8_t *d, const void *key, size_t klen, bool *exact)
{
	unsigned lo = 0, hi = node_n(d);

	*exact = false;
	while (lo < hi) {
		unsigned mid = (lo + hi) / 2;
		size_t mlen;
		const uint8_t *mk = node_key(d, mid, &mlen);
		int c = key_cmp(mk, mlen, key, klen);
		if (c < 0) {
			lo = mid + 1;
		} else {
			if (c == 0)
				*exact = true;
			hi = mid;
		}
	}
	return lo;
}

unsigned node_child_slot(const uint8_t *d, const void *key, size_t klen)
{
	/* Slot 0 stands for "minus infinity": its stored key may be stale
	 * (smaller keys are routed to it without updating it), so only slots
	 * 1.. are compared.  Find the last slot whose key is <= key. */
	unsigned lo = 1, hi = node_n(d);

	while (lo < hi) {
		unsigned mid = (lo + hi) / 2;
		size_t mlen;
		const uint8_t *mk = node_key(d, mid, &mlen);
		if (key_cmp(mk, mlen, key, klen) <= 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo - 1;
}

void node_compact(uint8_t *d)
{
	uint8_t tmp[RFS_BLOCK_SIZE];
	struct node_hdr *h = node_hdr(d);
	unsigned n = h->nitems;
	uint16_t top = RFS_BLOCK_SIZE;

	for (unsigned i = 0; i < n; i++) {
		struct node_slot *s = node_slot(d, i);
		uint16_t len = s->klen + s->vlen;
		top -= len;
		memcpy(tmp + top, d + s->off, len);
		s->off = top;
	}
	memcpy(d + top, tmp + top, RFS_BLOCK_SIZE - top);
	h->data_start = top;
	h->frag = 0;
}

void node_insert(uint8_t *d, unsigned i, const void *key, size_t klen,
		 const void *val, size_t vlen, uint8_t flags)
{
	struct node_hdr *h = node_hdr(d);
	size_t contiguous;

	assert(node_free(d) >= item_size(klen, vlen));
	contiguous = h->data_start - NODE_HDR_SIZE - (size_t)h->nitems * NODE_SLOT_SIZE;
	if (contiguous < item_size(klen, vlen))
		node_compact(d);
	h->data_start -= (uint16_t)(klen + vlen);
	memcpy(d + h->data_start, key, klen);
	if (vlen)
		memcpy(d + h->data_start + klen, val, vlen);
	memmove(node_slot(d, i + 1), node_slot(d, i),
		(size_t)(h->nitems - i) * NODE_SLOT_SIZE);
	struct node_slot *s = node_slot(d, i);
	s->off = h->data_start;
	s->klen = (uint16_t)klen;
	s->vlen = (uint16_t)vlen;
	s->flags = flags;
	s->pad = 0;
	h->nitems++;
}

void node_remove(uint8_t *d, unsigned i)
{
	struct node_hdr *h = node_hdr(d);
	struct node_slot *s = node_slot(d, i);
	uint16_t len = s->klen + s->vlen;

	if (s->off == h->data_start)
		h->data_start += len;
	else
		h->frag += len;
	memmove(node_slot(d, i), node_slot(d, i + 1),
		(size_t)(h->nitems - i - 1) * NODE_SLOT_SIZE);
	h->nitems--;
	if (h->nitems == 0) {
		h->data_start = RFS_BLOCK_SIZE;
		h->frag = 0;
	}
}

void node_move_tail(uint8_t *dst, uint8_t *src, unsigned from)
{
	unsigned n = node_n(src);

	for (unsigned i = from; i < n; i++) {
		size_t klen, vlen;
		const uint8_t *k = node_key(src, i, &klen);
		const uint8_t *v = node_val(src, i, &vlen);
		node_insert(dst, node_n(dst), k, klen, v, vlen, node_flags(src, i));
	}
	while (node_n(src) > from)
		node_remove(src, node_n(src) - 1);
	node_compact(src);
}

unsigned node_split_point(const uint8_t *d, unsigned extra_at, size_t extra_size)
{
	unsigned n = node_n(d);
	size_t total = node_used(d) + extra_size, left = 0;
	unsigned best = 1;
	size_t best_max = (size_t)-1;

	/* Try every split index; pick the one minimising the larger half.
	 * Item i counts the extra item in front of it when i == extra_at. */
	for (unsigned i = 0; i <= n; i++) {
		if (i > 0) {
			const struct node_slot *s = node_cslot(d, i - 1);
			left += item_size(s->klen, s->vlen);
		}
		size_t l = left, r;
		/* extra item goes left when extra_at < i */
		if (extra_size && extra_at < i)
			l += extra_size;
		r = total - l;
		if (i == 0 || i == n)
			continue; /* both sides must keep an original item */
		size_t mx = l > r ? l : r;
		if (mx < best_max) {
			best_max = mx;
			best = i;
		}
	}
	return best;
}

const char *node_validate(const uint8_t *d)
{
	const struct node_hdr *h = (const struct node_hdr *)d;
	unsigned n = h->nitems;
	size_t data = 0;

	if (h->h.level >= NODE_MAX_HEIGHT)
		return "level out of range";
	if (h->h.level > 0 && n == 0)
		return "empty internal node";
	if ((size_t)NODE_HDR_SIZE + (size_t)n * NODE_SLOT_SIZE > h->data_start ||
	    h->data_start > RFS_BLOCK_SIZE)
		return "slot array overlaps item data";
	for (unsigned i = 0; i < n; i++) {
		const struct node_slot *s = node_cslot(d, i);
		if (s->klen == 0 || s->klen > RFS_KEY_MAX || s->vlen > RFS_VAL_MAX)
			return "item size out of range";
		if (s->off < h->data_start ||
		    (size_t)s->off + s->klen + s->vlen > RFS_BLOCK_SIZE)
			return "item data outside the data area";
		if (h->h.level > 0 && s->vlen != sizeof(struct node_child))
			return "internal item of wrong size";
		data += (size_t)s->klen + s->vlen;
		/* Internal slot 0's key is not a routing key (see
		 * node_child_slot), so order is checked from slot 1 on. */
		if (i > (h->h.level > 0 ? 1u : 0u)) {
			size_t al, bl;
			const uint8_t *a = node_key(d, i - 1, &al);
			const uint8_t *b = node_key(d, i, &bl);
			if (key_cmp(a, al, b, bl) >= 0)
				return "keys out of order";
		}
	}
	if (data + h->frag != (size_t)(RFS_BLOCK_SIZE - h->data_start))
		return "item data accounting mismatch";
	return NULL;
}
