/* SPDX-License-Identifier: MIT */
/* Segments: create, open, map, close and unlink a channel's shared memory object or file (any kind). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#define SHM_PREFIX "/shmchan."

/*
 * Maps `size` bytes of fd at an address aligned to `align` (slots with an alignment above the page
 * size must be aligned in memory, not just in the file): reserve size + align of address space,
 * map the object over an aligned part of it with MAP_FIXED, and give back the rest.
 */
static void *shmchan_map(int fd, uint64_t size, uint64_t align, int prot, int flags)
{
	uint8_t *res, *at;
	uintptr_t a;
	size_t len = (size_t)size;

	if (align <= shmchan_page_size()) {
		return mmap(NULL, len, prot, flags, fd, 0);
	}
	res = mmap(NULL, len + (size_t)align, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (res == MAP_FAILED)
		return MAP_FAILED;
	a = ((uintptr_t)res + (uintptr_t)align - 1) & ~((uintptr_t)align - 1);
	at = mmap((void *)a, len, prot, flags | MAP_FIXED, fd, 0);
	if (at == MAP_FAILED) {
		int e = errno;
		munmap(res, len + (size_t)align);
		errno = e;
		return MAP_FAILED;
	}
	if (at > res)
		munmap(res, (size_t)(at - res));
	if (at + len < res + len + align)
		munmap(at + len, (size_t)(res + len + align - (at + len)));
	return at;
}

static int shm_name(const char *name, char **out, struct shmchan_diag *diag)
{
	int rc = shmchan_validate_name(name);

	if (rc) {
		shmchan_diagf(diag, "invalid channel name: use 1-247 of A-Z a-z 0-9 _ . -, not starting with . or -");
		return rc;
	}
	*out = malloc(sizeof(SHM_PREFIX) + strlen(name));
	if (!*out)
		return -ENOMEM;
	strcpy(*out, SHM_PREFIX);
	strcat(*out, name);
	return 0;
}

/* What kind of thing a non-regular file is, for a diagnostic. */
static const char *file_type(mode_t m)
{
	return S_ISFIFO(m)   ? "a FIFO"
	       : S_ISDIR(m)  ? "a directory"
	       : S_ISSOCK(m) ? "a socket"
	       : S_ISLNK(m)  ? "a symbolic link"
	       : S_ISCHR(m) || S_ISBLK(m) ? "a device" : "not a regular file";
}

/*
 * Opens a channel's object (a shm name, or a file path): never follows a symlink at the last
 * component, never blocks (a FIFO at the name would block an open for reading until a writer came,
 * for ever), and refuses anything but a regular file with -SHMCHAN_ENOTREG. The fd, or -errno.
 */
static int open_object(const char *name, int is_shm, int oflags, struct shmchan_diag *diag)
{
	const int flags = oflags | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC;
	char path[320];
	struct stat st;
	int fd = is_shm ? shm_open(name, flags, 0) : open(name, flags);

	snprintf(path, sizeof(path), "%s%s", is_shm ? "/dev/shm" : "", name);
	if (fd < 0) {
		int e = errno;
		/* a symlink (ELOOP), a directory opened for writing (EISDIR; shm_open says EINVAL), a socket
		   (ENXIO) */
		if ((e == ELOOP || e == EISDIR || e == EINVAL || e == ENXIO) && lstat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
			shmchan_diagf(diag, "%s is %s, not a channel", path, file_type(st.st_mode));
			return -SHMCHAN_ENOTREG;
		}
		shmchan_diagf(diag, "cannot open %s: %s", path, strerror(e));
		return -e;
	}
	if (fstat(fd, &st) != 0) {
		int e = errno;
		close(fd);
		shmchan_diagf(diag, "fstat of %s: %s", path, strerror(e));
		return -e;
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		shmchan_diagf(diag, "%s is %s, not a channel", path, file_type(st.st_mode));
		return -SHMCHAN_ENOTREG;
	}
	return fd;
}

static void remove_name(const char *name, int backing)
{
	if (backing == SHMCHAN_BACKING_FILE)
		(void)unlink(name);
	else if (backing == SHMCHAN_BACKING_SHM)
		(void)shm_unlink(name);
}

static int new_channel(int fd, char *name, int backing, int is_creator, uint8_t *base,
		       const struct shmchan_geom *g, shmchan_channel **out, struct shmchan_diag *diag)
{
	shmchan_channel *ch;
	int rc;
	/* a sealed memfd cannot be truncated; anything with a name can, so its mapping must be guarded */
	int guard = backing == SHMCHAN_BACKING_MEMFD ? -1 : shmchan_guard_register(base, g->total_size);

	if (guard < -1) {
		/* -EMFILE (the guard's table is full) or -ENOMEM: never map unguarded */
		shmchan_diagf(diag, "cannot guard the mapping against truncation: %s",
			      guard == -EMFILE ? "this process has too many channel mappings open" : strerror(-guard));
		return guard;
	}
	ch = calloc(1, sizeof(*ch));
	if (!ch) {
		shmchan_guard_unregister(guard);
		return -ENOMEM;
	}
	ch->fd = fd;
	ch->name = name;
	ch->backing = backing;
	ch->is_creator = is_creator;
	ch->base = base;
	ch->hdr = (struct shmchan_header *)(void *)base;
	ch->lens = (_Atomic uint64_t *)(void *)(base + g->lens_offset);
	ch->meta = (struct shmchan_slot_meta *)(void *)(base + g->lens_offset);
	ch->places = g->readers_offset ? (struct shmchan_reader_place *)(void *)(base + g->readers_offset) : NULL;
	ch->data = base + g->data_offset;
	ch->g = *g;
	ch->guard = guard;
	ch->tripped = shmchan_guard_flag(guard);
	pthread_mutex_init(&ch->sleep_mu, NULL);
	/* no writer yet: this handle's view of the slots is read-only */
	rc = shmchan_segment_protect_slots(ch, 0);
	if (rc) {
		shmchan_diagf(diag, "mprotect of the slots: %s", strerror(-rc));
		shmchan_guard_unregister(guard);
		pthread_mutex_destroy(&ch->sleep_mu);
		free(ch);
		return rc;
	}
	*out = ch;
	return 0;
}

/* Sizes, allocates, maps and initialises a freshly created (O_EXCL) object; removes it on failure. */
int shmchan_segment_init(int fd, char *name, int backing, const struct shmchan_geom *g, uint32_t mode,
			 const void *descriptor, shmchan_channel **out, struct shmchan_diag *diag)
{
	struct shmchan_header *h;
	struct timespec now;
	uint8_t *base = MAP_FAILED;
	int rc;

	/* First of all: openers wait for a creator only while somebody holds this lock */
	rc = shmchan_lock_byte(fd, SHMCHAN_LOCK_ATTACH, 0);
	if (rc) {
		shmchan_diagf(diag, "cannot take the attach lock: %s", strerror(-rc));
		goto fail;
	}
	/* umask narrowed the mode given to open; fchmod makes it exactly what was asked for */
	if (fchmod(fd, mode ? (mode_t)mode : 0600) != 0) {
		rc = -errno;
		shmchan_diagf(diag, "fchmod: %s", strerror(errno));
		goto fail;
	}
	if (ftruncate(fd, (off_t)g->total_size) != 0) {
		rc = -errno;
		shmchan_diagf(diag, "ftruncate to %llu bytes: %s", (unsigned long long)g->total_size, strerror(errno));
		goto fail;
	}
	/* ftruncate reserves nothing: allocate now so a full tmpfs fails here, not as SIGBUS later */
	rc = posix_fallocate(fd, 0, (off_t)g->total_size);
	if (rc != 0) {
		shmchan_diagf(diag, "cannot allocate %llu bytes: %s", (unsigned long long)g->total_size, strerror(rc));
		rc = -rc;
		goto fail;
	}
	base = shmchan_map(fd, g->total_size, g->slot_align, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE);
	if (base == MAP_FAILED) {
		rc = -errno;
		shmchan_diagf(diag, "mmap of %llu bytes: %s", (unsigned long long)g->total_size, strerror(errno));
		goto fail;
	}

	h = (struct shmchan_header *)(void *)base;
	clock_gettime(CLOCK_REALTIME, &now);
	shmchan_write_once16(&h->version_major, g->version_major);
	shmchan_write_once16(&h->version_minor, g->version_minor);
	shmchan_write_once32(&h->kind, g->kind);
	shmchan_write_once32(&h->max_readers, g->max_readers);
	shmchan_write_once32(&h->policy, g->policy);
	shmchan_write_once64(&h->readers_offset, g->readers_offset);
	shmchan_write_once32(&h->flags, g->flags);
	shmchan_write_once32(&h->capacity, g->capacity);
	shmchan_write_once64(&h->slot_size, g->slot_size);
	shmchan_write_once64(&h->slot_stride, g->slot_stride);
	shmchan_write_once32(&h->slot_align, g->slot_align);
	shmchan_write_once32(&h->creator_pid, (uint32_t)getpid());
	shmchan_write_once64(&h->lens_offset, g->lens_offset);
	shmchan_write_once64(&h->data_offset, g->data_offset);
	shmchan_write_once64(&h->total_size, g->total_size);
	shmchan_write_once64(&h->created_ns, (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec);
	shmchan_write_once64(&h->descriptor_offset, g->descriptor_offset);
	shmchan_write_once64(&h->descriptor_size, g->descriptor_size);
	if (g->descriptor_size) /* plain bytes, like a payload: published by (H) with the rest */
		memcpy(base + g->descriptor_offset, descriptor, (size_t)g->descriptor_size);
	/* (H) release: publishes every identity field before the magic; pairs with (I) in validate.c */
	shmchan_store_release64(&h->magic, SHMCHAN_MAGIC);

	{
		struct shmchan_geom mine = *g;
		mine.creator_pid = (uint32_t)getpid();
		mine.created_ns = shmchan_read_once64(&h->created_ns);
		rc = new_channel(fd, name, backing, 1, base, &mine, out, diag);
	}
	if (rc)
		goto fail;
	return 0;
fail:
	if (base != MAP_FAILED)
		munmap(base, (size_t)g->total_size);
	remove_name(name, backing);
	close(fd);
	free(name);
	return rc;
}

static int create_common(char *name, int is_file, const struct shmchan_config *cfg, shmchan_channel **out,
			 struct shmchan_diag *diag)
{
	struct shmchan_geom g;
	int fd, rc;

	rc = shmchan_geometry(cfg, &g);
	if (rc == 0 && cfg->descriptor_size && !cfg->descriptor)
		rc = -EINVAL;
	if (rc) {
		shmchan_diagf(diag, rc == -EOVERFLOW ? "channel size overflows" : "invalid channel geometry");
		free(name);
		return rc;
	}
	if (is_file)
		fd = open(name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	else
		fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = -errno;
		shmchan_diagf(diag, "cannot create %s: %s", name, strerror(errno));
		free(name);
		return rc;
	}
	return shmchan_segment_init(fd, name, is_file ? SHMCHAN_BACKING_FILE : SHMCHAN_BACKING_SHM, &g, cfg->mode,
				    cfg->descriptor, out, diag);
}

int shmchan_segment_create(const char *name, const struct shmchan_config *cfg, shmchan_channel **out,
			   struct shmchan_diag *diag)
{
	char *shm;
	int rc = shm_name(name, &shm, diag);

	if (rc)
		return rc;
	return create_common(shm, 0, cfg, out, diag);
}

int shmchan_segment_create_file(const char *path, const struct shmchan_config *cfg, shmchan_channel **out,
				struct shmchan_diag *diag)
{
	char *p;

	if (!path || !*path)
		return -EINVAL;
	p = strdup(path);
	if (!p)
		return -ENOMEM;
	return create_common(p, 1, cfg, out, diag);
}

#define SHMCHAN_INIT_GRACE_NS 100000000 /* 100 ms */

/* Whether the object's metadata changed (created, resized, chmod-ed) within the grace period. */
static int recently_changed(const struct stat *st)
{
	struct timespec now;
	int64_t changed, t;

	clock_gettime(CLOCK_REALTIME, &now);
	changed = (int64_t)st->st_ctim.tv_sec * 1000000000 + st->st_ctim.tv_nsec;
	t = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
	return t - changed < SHMCHAN_INIT_GRACE_NS;
}

/* Refuses objects that somebody else could write, unless the caller allows it. */
static int check_owner(const struct stat *st, uint32_t flags, struct shmchan_diag *diag)
{
	if (flags & SHMCHAN_OPEN_ALLOW_FOREIGN)
		return 0;
	if (st->st_uid != geteuid()) {
		shmchan_diagf(diag, "owned by uid %u, not by this user (uid %u): allow foreign channels to open it",
			      (unsigned)st->st_uid, (unsigned)geteuid());
		return -EPERM;
	}
	if (st->st_mode & (S_IWGRP | S_IWOTH)) {
		shmchan_diagf(diag, "writable by group or others (mode %04o), so another user could corrupt it: "
			      "allow foreign channels to open it", (unsigned)(st->st_mode & 07777));
		return -EPERM;
	}
	return 0;
}

/* Waits (bounded) for the creator to publish the header, validates it, then maps the whole segment. */
int shmchan_segment_attach(int fd, char *name, int backing, int64_t timeout_ns, uint32_t flags,
			   shmchan_channel **out, struct shmchan_diag *diag)
{
	const int64_t deadline = shmchan_deadline(shmchan_now_ns(), timeout_ns);
	struct shmchan_geom g;
	struct stat st;
	uint8_t *base;
	int orphan_looks = 0;
	int rc;

	if (fstat(fd, &st) != 0) {
		rc = -errno;
		goto fail;
	}
	rc = check_owner(&st, flags, diag);
	if (rc)
		goto fail;
	rc = shmchan_lock_byte(fd, SHMCHAN_LOCK_ATTACH, 0);
	if (rc) {
		shmchan_diagf(diag, "cannot take the attach lock: %s", strerror(-rc));
		goto fail;
	}
	for (;;) {
		if (fstat(fd, &st) != 0) {
			rc = -errno;
			goto fail;
		}
		if ((uint64_t)st.st_size >= SHMCHAN_CONTROL_SIZE) {
			void *ctl = mmap(NULL, SHMCHAN_CONTROL_SIZE, PROT_READ, MAP_SHARED, fd, 0);
			if (ctl == MAP_FAILED) {
				rc = -errno;
				shmchan_diagf(diag, "mmap of the header: %s", strerror(errno));
				goto fail;
			}
			rc = shmchan_validate_header(ctl, (uint64_t)st.st_size, &g, diag);
			munmap(ctl, SHMCHAN_CONTROL_SIZE);
			if (rc != -SHMCHAN_ENOTINIT)
				break;
		} else {
			rc = -SHMCHAN_ENOTINIT;
			shmchan_diagf(diag, "not initialised: the object holds %llu bytes, less than a header",
				      (unsigned long long)st.st_size);
		}
		/*
		 * Not initialised. Worth waiting for while a creator may still be at work: somebody holds
		 * the attach lock, or the object changed within the grace period (a creator takes the lock
		 * right after creating it, but may be descheduled in between). Nobody holding it is only
		 * believed after two looks, re-reading the header in between: the creator may have
		 * finished and closed since we read it.
		 */
		if (shmchan_byte_locked(fd, SHMCHAN_LOCK_ATTACH) == 1 || recently_changed(&st)) {
			orphan_looks = 0;
		} else if (++orphan_looks >= 2) {
			size_t n = strlen(diag ? diag->message : "");
			if (diag && n < sizeof(diag->message) - 1)
				snprintf(diag->message + n, sizeof(diag->message) - n,
					 "; no process holds it (its creator died during initialisation?)");
			goto fail;
		}
		if (shmchan_now_ns() >= deadline)
			goto fail;
		usleep(1000);
	}
	if (rc == 0 && (g.flags & SHMCHAN_FLAG_SEALED) && backing != SHMCHAN_BACKING_MEMFD) {
		shmchan_diagf(diag, "the header says sealed memfd, but this is a named object");
		rc = -SHMCHAN_ECORRUPT;
	}
	if (rc)
		goto fail;
	/*
	 * A creator allocates every byte (posix_fallocate) before it publishes the header, so a
	 * shared-memory object whose allocated blocks do not cover total_size was not made by one: a
	 * sparse object under a valid header, which MAP_POPULATE would fill with up to 2^46 bytes of
	 * memory. Refused before anything is mapped. (Files are exempt: a compressing file system may
	 * store an allocated file in fewer blocks, and their holes are page cache, not pinned memory.)
	 */
	if (fstat(fd, &st) != 0) { /* again: the look above may predate the creator's allocation */
		rc = -errno;
		goto fail;
	}
	if (backing != SHMCHAN_BACKING_FILE && (uint64_t)st.st_blocks < g.total_size / 512) {
		shmchan_diagf(diag, "sparse object: %llu of its %llu bytes are allocated (a channel is always fully "
			      "allocated by its creator)", (unsigned long long)st.st_blocks * 512,
			      (unsigned long long)g.total_size);
		rc = -SHMCHAN_ECORRUPT;
		goto fail;
	}

	base = shmchan_map(fd, g.total_size, g.slot_align, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE);
	if (base == MAP_FAILED) {
		rc = -errno;
		shmchan_diagf(diag, "mmap of %llu bytes: %s", (unsigned long long)g.total_size, strerror(errno));
		goto fail;
	}
	rc = new_channel(fd, name, backing, 0, base, &g, out, diag);
	if (rc) {
		munmap(base, (size_t)g.total_size);
		goto fail;
	}
	return 0;
fail:
	close(fd);
	free(name);
	return rc;
}

int shmchan_segment_open(const char *name, int64_t timeout_ns, uint32_t flags, shmchan_channel **out,
			 struct shmchan_diag *diag)
{
	char *shm;
	int fd, rc;

	rc = shm_name(name, &shm, diag);
	if (rc)
		return rc;
	fd = open_object(shm, 1, O_RDWR, diag);
	if (fd < 0) {
		free(shm);
		return fd;
	}
	return shmchan_segment_attach(fd, shm, SHMCHAN_BACKING_SHM, timeout_ns, flags, out, diag);
}

int shmchan_segment_open_file(const char *path, int64_t timeout_ns, uint32_t flags, shmchan_channel **out,
			      struct shmchan_diag *diag)
{
	char *p;
	int fd;

	if (!path || !*path)
		return -EINVAL;
	fd = open_object(path, 0, O_RDWR, diag);
	if (fd < 0)
		return fd;
	p = strdup(path);
	if (!p) {
		close(fd);
		return -ENOMEM;
	}
	return shmchan_segment_attach(fd, p, SHMCHAN_BACKING_FILE, timeout_ns, flags, out, diag);
}

/*
 * A handle maps the slot region read-only until a writer attaches to it: a reader's views cannot
 * write into the slots other readers see (a stray native write faults at once), whatever a binding
 * or a library on top does with them. The region starts at data_offset, a multiple of 4096; on a
 * machine with larger pages the partial page at its start stays as it was.
 */
int shmchan_segment_protect_slots(shmchan_channel *ch, int writable)
{
	const uint64_t page = shmchan_page_size();
	const uint64_t from = (ch->g.data_offset + page - 1) & ~(page - 1);

	if (from < ch->g.total_size && (writable != ch->slots_writable || !writable) &&
	    mprotect(ch->base + from, (size_t)(ch->g.total_size - from), writable ? PROT_READ | PROT_WRITE : PROT_READ))
		return -errno;
	ch->slots_writable = writable;
	return 0;
}

void shmchan_segment_close(shmchan_channel *ch)
{
	shmchan_guard_unregister(ch->guard);
	pthread_mutex_destroy(&ch->sleep_mu);
	munmap(ch->base, (size_t)ch->g.total_size);
	if (!ch->inherited)
		close(ch->fd); /* drops this handle's OFD locks */
	free(ch->name);
	free(ch);
}

void shmchan_forget_inherited(shmchan_channel *ch)
{
	if (!ch || ch->inherited)
		return;
	ch->inherited = 1;
	/* The descriptor is a copy of the parent's: closing it leaves the parent's OFD locks (on the
	   same open file description) in place, while keeping it would keep them alive after the
	   parent is gone. Unlocking would release the parent's: never here. */
	close(ch->fd);
	ch->fd = -1;
}

int shmchan_channel_unlink(shmchan_channel *ch)
{
	int rc;

	if (!ch)
		return -EINVAL;
	if (ch->backing == SHMCHAN_BACKING_MEMFD)
		return -EINVAL; /* it has no name */
	rc = ch->backing == SHMCHAN_BACKING_FILE ? unlink(ch->name) : shm_unlink(ch->name);
	return rc == 0 ? 0 : -errno;
}

int shmchan_unlink(const char *name)
{
	char *shm;
	int rc = shm_name(name, &shm, NULL);

	if (rc)
		return rc;
	rc = shm_unlink(shm) == 0 ? 0 : -errno;
	free(shm);
	return rc;
}

/* Whether an opened object is held by any process (or too fresh to tell). */
static int held(int fd)
{
	struct stat st;

	if (fstat(fd, &st) != 0)
		return -errno;
	if (shmchan_byte_locked(fd, SHMCHAN_LOCK_ATTACH) != 0)
		return 1; /* held, or we cannot tell */
	return recently_changed(&st);
}

int shmchan_is_stale(const char *name)
{
	char *shm;
	int fd, rc = shm_name(name, &shm, NULL);

	if (rc)
		return rc;
	fd = open_object(shm, 1, O_RDONLY, NULL);
	free(shm);
	if (fd < 0)
		return fd;
	rc = held(fd);
	close(fd);
	return rc < 0 ? rc : !rc;
}

int shmchan_reclaim_stale(const char *name)
{
	struct stat mine, now;
	char *shm, path[300];
	int fd, rc = shm_name(name, &shm, NULL);

	if (rc)
		return rc;
	fd = open_object(shm, 1, O_RDWR, NULL);
	if (fd < 0) {
		rc = fd;
		goto out;
	}
	/* An exclusive attach lock: nobody holds the channel, and nobody can attach while we decide. */
	rc = shmchan_lock_byte(fd, SHMCHAN_LOCK_ATTACH, 1);
	if (rc == 0 && held(fd) != 0) /* our own lock does not show; only freshness can say "busy" */
		rc = -EBUSY;
	/* Remove the name only if it still names the object we checked (not a newer one). */
	snprintf(path, sizeof(path), "/dev/shm%s", shm);
	if (rc == 0 && (fstat(fd, &mine) != 0 || stat(path, &now) != 0 || mine.st_ino != now.st_ino ||
			mine.st_dev != now.st_dev))
		rc = -EBUSY;
	if (rc == 0 && shm_unlink(shm) != 0)
		rc = -errno;
	close(fd);
out:
	free(shm);
	return rc;
}

int shmchan_info(const shmchan_channel *ch, struct shmchan_info *out)
{
	if (!ch || !out)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	out->version_major = ch->g.version_major;
	out->version_minor = ch->g.version_minor;
	out->capacity = ch->g.capacity;
	out->slot_size = ch->g.slot_size;
	out->slot_stride = ch->g.slot_stride;
	out->slot_align = ch->g.slot_align;
	out->msync_policy = ch->g.flags & SHMCHAN_FLAG_MSYNC_MASK;
	out->data_offset = ch->g.data_offset;
	out->total_size = ch->g.total_size;
	out->created_ns = ch->g.created_ns;
	out->creator_pid = ch->g.creator_pid;
	out->is_creator = ch->is_creator;
	out->descriptor_size = ch->g.descriptor_size;
	out->sealed = (ch->g.flags & SHMCHAN_FLAG_SEALED) != 0;
	out->kind = ch->g.kind;
	out->max_readers = ch->g.max_readers;
	out->policy = ch->g.policy;
	return 0;
}

int shmchan_kind(const shmchan_channel *ch)
{
	return ch ? (int)ch->g.kind : -EINVAL;
}

int shmchan_read_descriptor(const shmchan_channel *ch, void *buf, uint64_t cap, uint64_t *len)
{
	if (!ch || !len || (!buf && cap))
		return -EINVAL;
	/* the validated local size, never the header field again */
	*len = ch->g.descriptor_size;
	if (cap < ch->g.descriptor_size)
		return -EMSGSIZE;
	if (ch->g.descriptor_size)
		memcpy(buf, ch->base + ch->g.descriptor_offset, (size_t)ch->g.descriptor_size);
	return 0;
}

int shmchan_flush(shmchan_channel *ch)
{
	if (!ch)
		return -EINVAL;
	return msync(ch->base, (size_t)ch->g.total_size, MS_SYNC) == 0 ? 0 : -errno;
}

void *shmchan_slot_address(const shmchan_channel *ch, uint32_t slot)
{
	if (!ch || slot >= ch->g.capacity)
		return NULL;
	return ch->data + (uint64_t)slot * ch->g.slot_stride;
}
