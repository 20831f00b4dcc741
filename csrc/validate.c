/* SPDX-License-Identifier: MIT */
/* Checks on everything that comes from outside: names, geometries and the bytes of a header. */
#include <errno.h>
#include <string.h>

#include "internal.h"

#define SHMCHAN_NAME_MAX 247 /* 255 (NAME_MAX) less the "shmchan." prefix */

int shmchan_validate_name(const char *name)
{
	size_t len, i;

	if (!name)
		return -EINVAL;
	len = strnlen(name, SHMCHAN_NAME_MAX + 1);
	if (len == 0)
		return -EINVAL;
	if (len > SHMCHAN_NAME_MAX)
		return -ENAMETOOLONG;
	if (name[0] == '.' || name[0] == '-')
		return -EINVAL;
	for (i = 0; i < len; i++) {
		char c = name[i];
		int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
			 c == '.' || c == '-';
		if (!ok)
			return -EINVAL;
	}
	return 0;
}

static int is_pow2_u64(uint64_t v)
{
	return v != 0 && (v & (v - 1)) == 0;
}

/* Rounds v up to a multiple of the power of two a; -EOVERFLOW if it does not fit. */
static int round_up(uint64_t v, uint64_t a, uint64_t *out)
{
	uint64_t t;

	if (__builtin_add_overflow(v, a - 1, &t))
		return -EOVERFLOW;
	*out = t & ~(a - 1);
	return 0;
}

uint32_t shmchan_default_slot_align(uint64_t slot_size)
{
	return slot_size < SHMCHAN_LAYOUT_PAGE ? SHMCHAN_SMALL_SLOT_ALIGN : SHMCHAN_LAYOUT_PAGE;
}

int shmchan_geometry(const struct shmchan_config *cfg, struct shmchan_geom *g)
{
	uint64_t align, lens_bytes, end, data_align, slots, total;
	uint32_t kind;

	if (!cfg || !g)
		return -EINVAL;
	if (cfg->slot_size == 0 || cfg->slot_size > SHMCHAN_MAX_SLOT_SIZE)
		return -EINVAL;
	if (!is_pow2_u64(cfg->capacity) || cfg->capacity > SHMCHAN_MAX_CAPACITY)
		return -EINVAL;
	align = cfg->slot_align ? cfg->slot_align : shmchan_default_slot_align(cfg->slot_size);
	if (!is_pow2_u64(align) || align < SHMCHAN_MIN_SLOT_ALIGN || align > SHMCHAN_MAX_SLOT_ALIGN)
		return -EINVAL;
	if (cfg->msync_policy > SHMCHAN_MSYNC_EXPLICIT)
		return -EINVAL;
	if (cfg->descriptor_size > SHMCHAN_MAX_DESCRIPTOR_SIZE)
		return -EINVAL;
	kind = cfg->kind ? cfg->kind : SHMCHAN_KIND_SPSC;
	if (cfg->_reserved)
		return -EINVAL;
	switch (kind) {
	case SHMCHAN_KIND_SPSC:
		if (cfg->max_readers || cfg->policy)
			return -EINVAL;
		break;
	case SHMCHAN_KIND_BROADCAST:
		/* two slots at least: a joining or lapped reader needs one the writer is not filling */
		if (cfg->capacity < 2 || cfg->max_readers == 0 || cfg->max_readers > SHMCHAN_MAX_READERS ||
		    cfg->policy > SHMCHAN_POLICY_OVERWRITE)
			return -EINVAL;
		break;
	case SHMCHAN_KIND_STATE:
		if (cfg->capacity != SHMCHAN_STATE_SLOTS || cfg->max_readers || cfg->policy)
			return -EINVAL;
		break;
	default:
		return -EINVAL;
	}

	memset(g, 0, sizeof(*g));
	if (round_up(cfg->slot_size, align, &g->slot_stride))
		return -EOVERFLOW;
	/* <= 2^28: cannot overflow */
	lens_bytes = (uint64_t)cfg->capacity *
		     (kind == SHMCHAN_KIND_SPSC ? sizeof(uint64_t) : sizeof(struct shmchan_slot_meta));
	end = SHMCHAN_LENS_OFFSET + lens_bytes;
	if (kind == SHMCHAN_KIND_BROADCAST) {
		g->readers_offset = (end + 127) & ~(uint64_t)127;
		end = g->readers_offset + (uint64_t)cfg->max_readers * SHMCHAN_READER_PLACE_SIZE;
	}
	if (cfg->descriptor_size) {
		g->descriptor_offset = (end + SHMCHAN_DESCRIPTOR_ALIGN - 1) & ~(uint64_t)(SHMCHAN_DESCRIPTOR_ALIGN - 1);
		g->descriptor_size = cfg->descriptor_size;
		end = g->descriptor_offset + g->descriptor_size;
	}
	data_align = align > SHMCHAN_LAYOUT_PAGE ? align : SHMCHAN_LAYOUT_PAGE;
	if (round_up(end, data_align, &g->data_offset))
		return -EOVERFLOW;
	if (__builtin_mul_overflow((uint64_t)cfg->capacity, g->slot_stride, &slots))
		return -EOVERFLOW;
	if (__builtin_add_overflow(g->data_offset, slots, &total))
		return -EOVERFLOW;
	if (total > SHMCHAN_MAX_TOTAL_SIZE || total > (uint64_t)PTRDIFF_MAX)
		return -EOVERFLOW;

	g->slot_size = cfg->slot_size;
	g->lens_offset = SHMCHAN_LENS_OFFSET;
	g->total_size = total;
	g->capacity = cfg->capacity;
	g->mask = cfg->capacity - 1;
	g->slot_align = (uint32_t)align;
	g->flags = cfg->msync_policy & SHMCHAN_FLAG_MSYNC_MASK;
	g->version_major = SHMCHAN_LAYOUT_MAJOR;
	g->version_minor = SHMCHAN_LAYOUT_MINOR;
	g->kind = kind;
	g->max_readers = cfg->max_readers;
	g->policy = cfg->policy;
	return 0;
}

int shmchan_layout_size(const struct shmchan_config *cfg, uint64_t *total_size)
{
	struct shmchan_geom g;
	int rc = shmchan_geometry(cfg, &g);

	if (rc == 0 && total_size)
		*total_size = g.total_size;
	return rc;
}

int shmchan_validate_header(const struct shmchan_header *h, uint64_t file_size, struct shmchan_geom *g,
			    struct shmchan_diag *diag)
{
	struct shmchan_config cfg;
	struct shmchan_geom want;
	uint64_t magic, stride, lens_offset, data_offset, total, desc_offset, desc_size, readers_offset;
	uint32_t kind, flags;
	uint16_t major, minor;
	int rc;

	/* (I) acquire: the identity fields are complete once magic is set; pairs with (H) in segment.c */
	magic = shmchan_load_acquire64(&h->magic);
	if (magic == 0) {
		shmchan_diagf(diag, "the header is not initialised yet (magic is zero)");
		return -SHMCHAN_ENOTINIT;
	}
	if (magic != SHMCHAN_MAGIC) {
		shmchan_diagf(diag, "bad magic 0x%016llx: not a shmchan channel", (unsigned long long)magic);
		return -SHMCHAN_EBADMAGIC;
	}
	/* Every field is read exactly once into a local; only the locals are checked and used. */
	major = shmchan_read_once16(&h->version_major);
	minor = shmchan_read_once16(&h->version_minor);
	if (major != SHMCHAN_LAYOUT_MAJOR) {
		shmchan_diagf(diag, "channel has layout version %u.%u, this build reads %u.x (up to %u.%u)", major,
			      minor, SHMCHAN_LAYOUT_MAJOR, SHMCHAN_LAYOUT_MAJOR, SHMCHAN_LAYOUT_MINOR);
		return -SHMCHAN_EVERSION;
	}
	kind = shmchan_read_once32(&h->kind);
	if (kind != SHMCHAN_KIND_SPSC && kind != SHMCHAN_KIND_BROADCAST && kind != SHMCHAN_KIND_STATE) {
		shmchan_diagf(diag, "unknown channel kind %u (layout %u.%u)", kind, major, minor);
		return -SHMCHAN_EVERSION;
	}
	flags = shmchan_read_once32(&h->flags);
	if (flags & ~SHMCHAN_FLAGS_KNOWN) {
		shmchan_diagf(diag, "unknown header flags 0x%x (layout %u.%u)", flags, major, minor);
		return -SHMCHAN_EVERSION;
	}

	memset(&cfg, 0, sizeof(cfg));
	cfg.capacity = shmchan_read_once32(&h->capacity);
	cfg.slot_size = shmchan_read_once64(&h->slot_size);
	cfg.slot_align = shmchan_read_once32(&h->slot_align);
	cfg.msync_policy = flags & SHMCHAN_FLAG_MSYNC_MASK;
	cfg.kind = kind;
	cfg.max_readers = shmchan_read_once32(&h->max_readers);
	cfg.policy = shmchan_read_once32(&h->policy);
	readers_offset = shmchan_read_once64(&h->readers_offset);
	stride = shmchan_read_once64(&h->slot_stride);
	lens_offset = shmchan_read_once64(&h->lens_offset);
	data_offset = shmchan_read_once64(&h->data_offset);
	total = shmchan_read_once64(&h->total_size);
	desc_offset = shmchan_read_once64(&h->descriptor_offset);
	desc_size = shmchan_read_once64(&h->descriptor_size);
	if (desc_size > SHMCHAN_MAX_DESCRIPTOR_SIZE) {
		shmchan_diagf(diag, "descriptor of %llu bytes (the limit is %u)", (unsigned long long)desc_size,
			      SHMCHAN_MAX_DESCRIPTOR_SIZE);
		return -SHMCHAN_ECORRUPT;
	}
	cfg.descriptor_size = (uint32_t)desc_size;

	if (cfg.slot_align == 0) {
		shmchan_diagf(diag, "slot alignment is zero");
		return -SHMCHAN_ECORRUPT;
	}
	rc = shmchan_geometry(&cfg, &want);
	if (rc) {
		shmchan_diagf(diag,
			      "impossible geometry: kind %u, slot_size %llu, capacity %u, alignment %u, "
			      "max_readers %u, policy %u",
			      kind, (unsigned long long)cfg.slot_size, cfg.capacity, cfg.slot_align, cfg.max_readers,
			      cfg.policy);
		return -SHMCHAN_ECORRUPT;
	}
	if (stride != want.slot_stride || lens_offset != want.lens_offset || data_offset != want.data_offset ||
	    total != want.total_size || desc_offset != want.descriptor_offset ||
	    readers_offset != want.readers_offset) {
		shmchan_diagf(diag,
			      "inconsistent geometry: stride %llu, lengths at %llu, data at %llu, total %llu "
			      "(expected %llu, %llu, %llu, %llu)",
			      (unsigned long long)stride, (unsigned long long)lens_offset,
			      (unsigned long long)data_offset, (unsigned long long)total,
			      (unsigned long long)want.slot_stride, (unsigned long long)want.lens_offset,
			      (unsigned long long)want.data_offset, (unsigned long long)want.total_size);
		return -SHMCHAN_ECORRUPT;
	}
	if (total > file_size) {
		shmchan_diagf(diag, "the object holds %llu bytes but its header describes %llu",
			      (unsigned long long)file_size, (unsigned long long)total);
		return -SHMCHAN_ECORRUPT;
	}
	want.flags = flags;
	want.version_major = major;
	want.version_minor = minor;
	want.created_ns = shmchan_read_once64(&h->created_ns);
	want.creator_pid = shmchan_read_once32(&h->creator_pid);
	*g = want;
	return 0;
}
