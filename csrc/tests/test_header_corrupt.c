/* SPDX-License-Identifier: MIT */
/* Corrupt headers: open refuses bad identity and geometry bytes with the exact code, and live handles poison on impossible positions and lengths. */
#include <pthread.h>
#include <stdatomic.h>

#include "testutil.h"

#include "layout.h"

#define SLOT 100
#define CAP 8
#define OPEN_TIMEOUT T_MS(1000) /* for rows expected to fail at once (they must take < 200 ms) */
#define SLOW_TIMEOUT T_MS(200)  /* for rows expected to wait the whole timeout */

enum op { SET, ADD, XOR, TRUNC, GROW };

struct row {
	const char *what;
	enum op op;
	size_t off;
	int width; /* 2, 4 or 8 bytes */
	uint64_t val;
	int want;
	int slow; /* ENOTINIT expected only after the whole timeout: a creator holds the attach lock */
};

static uint64_t get_n(const struct t_map *m, size_t off, int width)
{
	return width == 8 ? t_get64(m, off) : width == 4 ? t_get32(m, off) : t_get16(m, off);
}

static void put_n(const struct t_map *m, size_t off, int width, uint64_t v)
{
	if (width == 8)
		t_put64(m, off, v);
	else if (width == 4)
		t_put32(m, off, (uint32_t)v);
	else
		t_put16(m, off, (uint16_t)v);
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

static int run_row(const struct row *r, int rowno)
{
	struct shmchan_config cfg = t_config(SLOT, CAP);
	struct shmchan_info info;
	struct shmchan_diag diag;
	shmchan_channel *creator, *ch;
	const char *name = t_name("hdr");
	struct t_map m;
	int64_t t0, el;

	cfg.slot_align = 4096; /* the rows' values (strides, offsets) assume page-aligned slots */
	uint64_t total;
	int rc;

	CHECK_RC(shmchan_create(name, &cfg, &creator, NULL), 0);
	CHECK_RC(shmchan_info(creator, &info), 0);
	total = info.total_size;
	m = t_map_object(name);
	switch (r->op) {
	case SET:
		put_n(&m, r->off, r->width, r->val);
		break;
	case ADD:
		put_n(&m, r->off, r->width, get_n(&m, r->off, r->width) + r->val);
		break;
	case XOR:
		put_n(&m, r->off, r->width, get_n(&m, r->off, r->width) ^ r->val);
		break;
	case TRUNC:
	case GROW: {
		char shm[300];
		snprintf(shm, sizeof(shm), "/shmchan.%s", name);
		int fd = shm_open(shm, O_RDWR, 0);
		CHECK(fd >= 0);
		CHECK(ftruncate(fd, (off_t)(r->op == TRUNC ? r->val : total + r->val)) == 0);
		close(fd);
		break;
	}
	}
	t_unmap(&m);

	diag.message[0] = '\0';
	ch = (shmchan_channel *)(uintptr_t)1;
	t0 = t_now_ns();
	rc = shmchan_open(name, r->slow ? SLOW_TIMEOUT : OPEN_TIMEOUT, &ch, &diag);
	el = t_now_ns() - t0;
	if (rc != r->want) {
		fprintf(stderr, "row %d (%s): open returned %d (%s), wanted %d (%s); diag: %s\n", rowno, r->what, rc,
			shmchan_strerror(rc), r->want, shmchan_strerror(r->want), diag.message);
		exit(1);
	}
	if (r->slow)
		CHECK_MSG(el >= SLOW_TIMEOUT && el < SLOW_TIMEOUT + T_MS(500), "row %d (%s): gave up after %.1f ms", rowno, r->what, t_ms(el));
	else
		CHECK_MSG(el < T_MS(200), "row %d (%s): took %.1f ms", rowno, r->what, t_ms(el));
	if (rc == 0) {
		struct shmchan_info got;
		CHECK_RC(shmchan_info(ch, &got), 0);
		if (r->off == SHMCHAN_OFF_VERSION_MINOR && r->op != GROW)
			CHECK(got.version_minor == (uint16_t)(shmchan_layout_minor() + (int)r->val) ||
			      got.version_minor == (uint16_t)r->val);
		if (r->off == SHMCHAN_OFF_CREATOR_PID && r->op == SET)
			CHECK(got.creator_pid == (uint32_t)r->val);
		if (r->off == SHMCHAN_OFF_FLAGS && r->op == SET)
			CHECK(got.msync_policy == (uint32_t)r->val);
		shmchan_close(ch);
	} else {
		CHECK_MSG(ch == NULL, "row %d: *out not NULL on failure", rowno);
		CHECK_MSG(diag.message[0] != '\0', "row %d (%s): no diagnostic", rowno, r->what);
	}
	if (r->off == SHMCHAN_OFF_VERSION_MAJOR && r->op == ADD) {
		char newv[32], ours[32];
		snprintf(newv, sizeof(newv), "%d.%d", shmchan_layout_major() + 1, shmchan_layout_minor());
		snprintf(ours, sizeof(ours), "%d.", shmchan_layout_major());
		CHECK_MSG(strstr(diag.message, newv) && strstr(diag.message, ours),
			  "version diagnostic does not name both versions: %s", diag.message);
	}
	shmchan_close(creator);
	CHECK_RC(shmchan_unlink(name), 0);
	return 0;
}

/* Each header field poked to a bad value: open returns exactly the code validate.c promises. */
static void open_rejects_bad_headers(void)
{
	const int EB = -SHMCHAN_EBADMAGIC, EV = -SHMCHAN_EVERSION, EC = -SHMCHAN_ECORRUPT;
	const struct row rows[] = {
		{"magic 0x1234", SET, SHMCHAN_OFF_MAGIC, 8, 0x1234, EB, 0},
		{"magic, one bit of the last byte", XOR, SHMCHAN_OFF_MAGIC, 8, 1ull << 56, EB, 0},
		{"magic all ones", SET, SHMCHAN_OFF_MAGIC, 8, UINT64_MAX, EB, 0},
		{"magic zero, creator alive", SET, SHMCHAN_OFF_MAGIC, 8, 0, -SHMCHAN_ENOTINIT, 1},
		{"version major + 1", ADD, SHMCHAN_OFF_VERSION_MAJOR, 2, 1, EV, 0},
		{"version major 0", SET, SHMCHAN_OFF_VERSION_MAJOR, 2, 0, EV, 0},
		{"version major 0xffff", SET, SHMCHAN_OFF_VERSION_MAJOR, 2, 0xffff, EV, 0},
		{"version minor + 1", ADD, SHMCHAN_OFF_VERSION_MINOR, 2, 1, 0, 0},
		{"version minor 0xffff", SET, SHMCHAN_OFF_VERSION_MINOR, 2, 0xffff, 0, 0},
		{"kind 0", SET, SHMCHAN_OFF_KIND, 4, 0, EV, 0},
		{"kind 4 (unknown)", SET, SHMCHAN_OFF_KIND, 4, 4, EV, 0},
		{"kind 2 without reader places", SET, SHMCHAN_OFF_KIND, 4, 2, EC, 0},
		{"flags bit 2 (sealed) on a named object", XOR, SHMCHAN_OFF_FLAGS, 4, 1u << 2, EC, 0},
		{"flags bit 3", XOR, SHMCHAN_OFF_FLAGS, 4, 1u << 3, EV, 0},
		{"flags bit 31", XOR, SHMCHAN_OFF_FLAGS, 4, 1u << 31, EV, 0},
		{"flags = msync explicit", SET, SHMCHAN_OFF_FLAGS, 4, 3, 0, 0},
		{"capacity 3", SET, SHMCHAN_OFF_CAPACITY, 4, 3, EC, 0},
		{"capacity 0", SET, SHMCHAN_OFF_CAPACITY, 4, 0, EC, 0},
		{"capacity 4 (smaller, valid power of two)", SET, SHMCHAN_OFF_CAPACITY, 4, 4, EC, 0},
		{"capacity 16 (larger than the object)", SET, SHMCHAN_OFF_CAPACITY, 4, 16, EC, 0},
		{"capacity 2^25", SET, SHMCHAN_OFF_CAPACITY, 4, 1u << 25, EC, 0},
		{"capacity 2^31", SET, SHMCHAN_OFF_CAPACITY, 4, 1u << 31, EC, 0},
		{"slot_size 0", SET, SHMCHAN_OFF_SLOT_SIZE, 8, 0, EC, 0},
		{"slot_size 4097 (stride no longer matches)", SET, SHMCHAN_OFF_SLOT_SIZE, 8, 4097, EC, 0},
		{"slot_size 2^41", SET, SHMCHAN_OFF_SLOT_SIZE, 8, 1ull << 41, EC, 0},
		{"slot_size 2^64-1", SET, SHMCHAN_OFF_SLOT_SIZE, 8, UINT64_MAX, EC, 0},
		{"slot_size 4096 (still consistent)", SET, SHMCHAN_OFF_SLOT_SIZE, 8, 4096, 0, 0},
		{"slot_stride + 8", ADD, SHMCHAN_OFF_SLOT_STRIDE, 8, 8, EC, 0},
		{"slot_stride 0", SET, SHMCHAN_OFF_SLOT_STRIDE, 8, 0, EC, 0},
		{"slot_stride 2^63", SET, SHMCHAN_OFF_SLOT_STRIDE, 8, 1ull << 63, EC, 0},
		{"slot_align 0", SET, SHMCHAN_OFF_SLOT_ALIGN, 4, 0, EC, 0},
		{"slot_align 3", SET, SHMCHAN_OFF_SLOT_ALIGN, 4, 3, EC, 0},
		{"slot_align 8", SET, SHMCHAN_OFF_SLOT_ALIGN, 4, 8, EC, 0},
		{"slot_align 8192", SET, SHMCHAN_OFF_SLOT_ALIGN, 4, 8192, EC, 0},
		{"slot_align 2^22", SET, SHMCHAN_OFF_SLOT_ALIGN, 4, 1u << 22, EC, 0},
		{"lens_offset 0", SET, SHMCHAN_OFF_LENS_OFFSET, 8, 0, EC, 0},
		{"lens_offset 2048", SET, SHMCHAN_OFF_LENS_OFFSET, 8, 2048, EC, 0},
		{"data_offset + 4096", ADD, SHMCHAN_OFF_DATA_OFFSET, 8, 4096, EC, 0},
		{"data_offset - 4096", ADD, SHMCHAN_OFF_DATA_OFFSET, 8, (uint64_t)-4096, EC, 0},
		{"data_offset 0", SET, SHMCHAN_OFF_DATA_OFFSET, 8, 0, EC, 0},
		{"data_offset 1", SET, SHMCHAN_OFF_DATA_OFFSET, 8, 1, EC, 0},
		{"total_size + 4096 (larger than the object)", ADD, SHMCHAN_OFF_TOTAL_SIZE, 8, 4096, EC, 0},
		{"total_size - 4096", ADD, SHMCHAN_OFF_TOTAL_SIZE, 8, (uint64_t)-4096, EC, 0},
		{"total_size 2^63", SET, SHMCHAN_OFF_TOTAL_SIZE, 8, 1ull << 63, EC, 0},
		{"total_size 0", SET, SHMCHAN_OFF_TOTAL_SIZE, 8, 0, EC, 0},
		{"creator_pid 12345 (informational)", SET, SHMCHAN_OFF_CREATOR_PID, 4, 12345, 0, 0},
		{"created_ns 42 (informational)", SET, SHMCHAN_OFF_CREATED_NS, 8, 42, 0, 0},
		{"object truncated by one page", TRUNC, 0, 0, 4096 * (1 + CAP - 1), EC, 0},
		{"object truncated to the header", TRUNC, 0, 0, SHMCHAN_CONTROL_SIZE, EC, 0},
		{"object truncated to 1 byte, creator alive", TRUNC, 0, 0, 1, -SHMCHAN_ENOTINIT, 1},
		{"object truncated to 0, creator alive", TRUNC, 0, 0, 0, -SHMCHAN_ENOTINIT, 1},
		{"object larger than total_size", GROW, 0, 0, 8192, 0, 0},
	};

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
		run_row(&rows[i], (int)i);
}

/* Writes a raw object /dev/shm/shmchan.<name> with the given bytes; nobody holds it afterwards. */
static void write_raw(const char *name, const void *bytes, size_t n)
{
	char shm[300];
	int fd;

	snprintf(shm, sizeof(shm), "/shmchan.%s", name);
	(void)shm_unlink(shm);
	fd = shm_open(shm, O_RDWR | O_CREAT | O_EXCL, 0600);
	CHECK(fd >= 0);
	if (n)
		CHECK(write(fd, bytes, n) == (ssize_t)n);
	close(fd);
}

static int open_raw(const char *name, struct shmchan_diag *diag, int64_t *elapsed)
{
	shmchan_channel *ch = (shmchan_channel *)(uintptr_t)1;
	int64_t t0 = t_now_ns();
	int rc;

	diag->message[0] = '\0';
	rc = shmchan_open(name, T_MS(2000), &ch, diag);
	*elapsed = t_now_ns() - t0;
	if (rc == 0) {
		shmchan_writer *w;
		shmchan_reader *r;
		struct shmchan_info info;
		char buf[64];
		uint64_t len;
		/* whatever open accepts must be usable without touching memory outside the object */
		CHECK_RC(shmchan_info(ch, &info), 0);
		CHECK_RC(shmchan_writer_attach(ch, &w), 0);
		CHECK_RC(shmchan_reader_attach(ch, &r), 0);
		uint64_t n = info.slot_size < sizeof(buf) ? info.slot_size : sizeof(buf);
		memset(buf, 0x5a, sizeof(buf));
		CHECK_RC(shmchan_send(w, buf, n, 0), 0);
		CHECK_RC(shmchan_recv(r, buf, sizeof(buf), &len, 0), 0);
		CHECK(len == n);
		shmchan_close(ch);
	} else {
		CHECK(ch == NULL);
	}
	return rc;
}

/* Objects nobody holds (a creator that died, or not a channel at all) fail promptly with a clean code. */
static void raw_objects_fail_promptly(void)
{
	char name[128];
	struct shmchan_config cfg = t_config(SLOT, CAP);
	struct shmchan_diag diag;
	shmchan_channel *tmpl;
	uint8_t bytes[4096];
	struct t_map img;
	int64_t el;
	int rc;

	t_name_buf(name, sizeof(name), "raw");
	/* zero length: the creator died before ftruncate */
	write_raw(name, NULL, 0);
	CHECK_RC(open_raw(name, &diag, &el), -SHMCHAN_ENOTINIT);
	CHECK_MSG(el < T_MS(200), "zero-length object: %.1f ms", t_ms(el));
	CHECK_MSG(strstr(diag.message, "no process holds") != NULL, "diag: %s", diag.message);

	/* 100 random bytes: smaller than a header */
	for (size_t i = 0; i < sizeof(bytes); i++)
		bytes[i] = (uint8_t)rng();
	write_raw(name, bytes, 100);
	rc = open_raw(name, &diag, &el);
	CHECK_MSG(rc == -SHMCHAN_ENOTINIT || rc == -SHMCHAN_EBADMAGIC, "100 random bytes: %d (%s)", rc,
		  shmchan_strerror(rc));
	CHECK_MSG(el < T_MS(200), "100 random bytes: %.1f ms", t_ms(el));

	/* a header-sized object of zeros: magic never written */
	memset(bytes, 0, sizeof(bytes));
	write_raw(name, bytes, 4096);
	CHECK_RC(open_raw(name, &diag, &el), -SHMCHAN_ENOTINIT);
	CHECK(el < T_MS(200));

	/* 4096 random bytes: bad magic */
	for (size_t i = 0; i < sizeof(bytes); i++)
		bytes[i] = (uint8_t)rng();
	write_raw(name, bytes, 4096);
	CHECK_RC(open_raw(name, &diag, &el), -SHMCHAN_EBADMAGIC);
	CHECK(el < T_MS(200));
	CHECK(strstr(diag.message, "magic") != NULL);

	/* a valid image copied from a real channel, but cut short: corrupt */
	CHECK_RC(shmchan_create(t_name("rawtmpl"), &cfg, &tmpl, NULL), 0);
	img = t_map_object(t_name("rawtmpl"));
	write_raw(name, img.base, 4096);
	CHECK_RC(open_raw(name, &diag, &el), -SHMCHAN_ECORRUPT);
	CHECK(el < T_MS(200));

	/* the whole valid image, nobody holding it (orphaned channel): usable */
	write_raw(name, img.base, img.size);
	CHECK_RC(open_raw(name, &diag, &el), 0);
	t_unmap(&img);
	shmchan_close(tmpl);
	CHECK_RC(shmchan_unlink(name), 0);
	CHECK_RC(shmchan_unlink(t_name("rawtmpl")), 0);
}

/*
 * A small deterministic fuzz of the identity block: flip 1-4 random bytes of a valid image in the
 * first 96 bytes. Every outcome must be a clean code (or a usable channel), returned promptly.
 */
static void fuzzed_identity_bytes(void)
{
	char name[128];
	struct shmchan_config cfg = t_config(SLOT, CAP);
	struct shmchan_diag diag;
	shmchan_channel *tmpl;
	struct t_map img;
	int counts[4] = {0, 0, 0, 0};

	t_name_buf(name, sizeof(name), "fuzz");

	CHECK_RC(shmchan_create(t_name("fuzztmpl"), &cfg, &tmpl, NULL), 0);
	img = t_map_object(t_name("fuzztmpl"));
	uint8_t *copy = malloc(img.size);
	CHECK(copy != NULL);
	for (int iter = 0; iter < 300; iter++) {
		int64_t el;
		memcpy(copy, img.base, img.size);
		int flips = 1 + (int)(rng() % 4);
		for (int f = 0; f < flips; f++)
			copy[8 + rng() % 88] ^= (uint8_t)(1u << (rng() % 8)); /* keep the magic: exercise the rest */
		write_raw(name, copy, img.size);
		int rc = open_raw(name, &diag, &el);
		CHECK_MSG(rc == 0 || rc == -SHMCHAN_EVERSION || rc == -SHMCHAN_ECORRUPT || rc == -SHMCHAN_EBADMAGIC,
			  "iteration %d: %d (%s)", iter, rc, shmchan_strerror(rc));
		CHECK_MSG(el < T_MS(200), "iteration %d: %.1f ms", iter, t_ms(el));
		counts[rc == 0 ? 0 : rc == -SHMCHAN_EVERSION ? 1 : rc == -SHMCHAN_ECORRUPT ? 2 : 3]++;
	}
	printf("  fuzz: %d accepted, %d EVERSION, %d ECORRUPT, %d EBADMAGIC\n", counts[0], counts[1], counts[2],
	       counts[3]);
	free(copy);
	t_unmap(&img);
	shmchan_close(tmpl);
	CHECK_RC(shmchan_unlink(name), 0);
	CHECK_RC(shmchan_unlink(t_name("fuzztmpl")), 0);
}

/* ---- runtime corruption: writer on handle a, reader on handle b, pokes through a third mapping ---- */

struct live {
	shmchan_channel *a, *b;
	shmchan_writer *w;
	shmchan_reader *r;
	struct t_map m;
};

static struct live live_open(const char *tag, int attach)
{
	struct shmchan_config cfg = t_config(SLOT, CAP);
	struct live l;

	memset(&l, 0, sizeof(l));
	CHECK_RC(shmchan_create(t_name(tag), &cfg, &l.a, NULL), 0);
	CHECK_RC(shmchan_open(t_name(tag), T_MS(500), &l.b, NULL), 0);
	if (attach) {
		CHECK_RC(shmchan_writer_attach(l.a, &l.w), 0);
		CHECK_RC(shmchan_reader_attach(l.b, &l.r), 0);
	}
	l.m = t_map_object(t_name(tag));
	return l;
}

static void live_close(struct live *l, const char *tag)
{
	t_unmap(&l->m);
	shmchan_close(l->b);
	shmchan_close(l->a);
	CHECK_RC(shmchan_unlink(t_name(tag)), 0);
}

static void send_n(shmchan_writer *w, int n)
{
	for (int i = 0; i < n; i++) {
		char msg[16];
		int k = snprintf(msg, sizeof(msg), "m%d", i);
		CHECK_RC(shmchan_send(w, msg, (uint64_t)k, 0), 0);
	}
}

static void reader_is_poisoned(struct live *l)
{
	struct shmchan_msg msg, batch[4];
	shmchan_writer *w2;
	char buf[SLOT];
	uint64_t len;

	CHECK_MSG(shmchan_channel_diag(l->b)[0] != '\0', "no diagnostic after corruption");
	CHECK_RC(shmchan_peek(l->r, 0, &msg), -SHMCHAN_ECORRUPT);
	CHECK_RC(shmchan_peek(l->r, -1, &msg), -SHMCHAN_ECORRUPT); /* at once, never a wait */
	CHECK_RC(shmchan_peek_batch(l->r, batch, 4, 0), -SHMCHAN_ECORRUPT);
	CHECK_RC(shmchan_recv(l->r, buf, sizeof(buf), &len, 0), -SHMCHAN_ECORRUPT);
	CHECK_RC(shmchan_writer_attach(l->b, &w2), -SHMCHAN_ECORRUPT);
	CHECK(w2 == NULL);
}

/* head beyond tail + capacity: peek returns ECORRUPT, the handle stays poisoned even after a repair. */
static void head_beyond_capacity(void)
{
	struct live l = live_open("headcap", 1);
	struct shmchan_msg msg;
	char buf[SLOT];
	uint64_t len;

	send_n(l.w, 2);
	CHECK_RC(shmchan_recv(l.r, buf, sizeof(buf), &len, 0), 0);
	CHECK_RC(shmchan_recv(l.r, buf, sizeof(buf), &len, 0), 0);
	CHECK(shmchan_channel_diag(l.b)[0] == '\0');
	t_put64(&l.m, SHMCHAN_OFF_HEAD, 2 + CAP + 1);
	CHECK_RC(shmchan_peek(l.r, 0, &msg), -SHMCHAN_ECORRUPT);
	CHECK_MSG(strstr(shmchan_channel_diag(l.b), "head") != NULL, "diag: %s", shmchan_channel_diag(l.b));
	t_put64(&l.m, SHMCHAN_OFF_HEAD, 2); /* repaired: the handle stays poisoned */
	reader_is_poisoned(&l);
	CHECK(shmchan_channel_diag(l.a)[0] == '\0'); /* the writer's handle saw nothing */
	live_close(&l, "headcap");
}

/* head moved backwards below the read position: ECORRUPT. */
static void head_moves_backwards(void)
{
	struct live l = live_open("headback", 1);
	struct shmchan_msg msg;

	send_n(l.w, 3);
	for (int i = 0; i < 3; i++)
		CHECK_RC(shmchan_peek(l.r, 0, &msg), 0);
	t_put64(&l.m, SHMCHAN_OFF_HEAD, 1);
	CHECK_RC(shmchan_peek(l.r, 0, &msg), -SHMCHAN_ECORRUPT);
	reader_is_poisoned(&l);
	live_close(&l, "headback");

	l = live_open("headback2", 1);
	send_n(l.w, 2);
	t_put64(&l.m, SHMCHAN_OFF_HEAD, UINT64_MAX); /* below tail 0, as a free-running position */
	CHECK_RC(shmchan_peek(l.r, 0, &msg), -SHMCHAN_ECORRUPT);
	live_close(&l, "headback2");
}

/* lens[slot] of a committed message larger than slot_size: ECORRUPT; exactly slot_size is fine. */
static void length_beyond_slot(void)
{
	const size_t lens0 = SHMCHAN_LENS_OFFSET;
	struct live l = live_open("lens", 1);
	struct shmchan_msg msg, batch[8];
	char buf[SLOT];
	uint64_t len;

	send_n(l.w, 1);
	t_put64(&l.m, lens0, SLOT); /* boundary: allowed */
	CHECK_RC(shmchan_recv(l.r, buf, sizeof(buf), &len, 0), 0);
	CHECK(len == SLOT);
	send_n(l.w, 1);
	t_put64(&l.m, lens0 + 8, SLOT + 1);
	CHECK_RC(shmchan_peek(l.r, 0, &msg), -SHMCHAN_ECORRUPT);
	CHECK_MSG(strstr(shmchan_channel_diag(l.b), "length") != NULL, "diag: %s", shmchan_channel_diag(l.b));
	reader_is_poisoned(&l);
	live_close(&l, "lens");

	l = live_open("lens2", 1);
	send_n(l.w, 1);
	t_put64(&l.m, lens0, UINT64_MAX);
	CHECK_RC(shmchan_recv(l.r, buf, sizeof(buf), &len, 0), -SHMCHAN_ECORRUPT);
	live_close(&l, "lens2");

	/* a corrupt length in the middle of a batch */
	l = live_open("lens3", 1);
	send_n(l.w, 3);
	t_put64(&l.m, lens0 + 2 * 8, 1ull << 31);
	CHECK_RC(shmchan_peek_batch(l.r, batch, 8, 0), -SHMCHAN_ECORRUPT);
	reader_is_poisoned(&l);
	live_close(&l, "lens3");
}

static void writer_is_poisoned(struct live *l)
{
	void *data;
	shmchan_reader *r2;

	CHECK_MSG(shmchan_channel_diag(l->a)[0] != '\0', "no diagnostic after corruption");
	CHECK_RC(shmchan_reserve(l->w, 1, 0, &data, NULL), -SHMCHAN_ECORRUPT);
	CHECK_RC(shmchan_reserve(l->w, 1, -1, &data, NULL), -SHMCHAN_ECORRUPT);
	CHECK_RC(shmchan_send(l->w, "x", 1, 0), -SHMCHAN_ECORRUPT);
	CHECK_RC(shmchan_reader_attach(l->a, &r2), -SHMCHAN_ECORRUPT);
}

/* tail beyond head (or more than capacity behind): a writer with a full ring gets ECORRUPT, not a wait. */
static void tail_beyond_head(void)
{
	const uint64_t bad[] = {CAP + 5, UINT64_MAX /* head - capacity - 1 */, CAP + 1};
	const int64_t timeouts[] = {0, -1, T_MS(5000)};

	for (int k = 0; k < 3; k++) {
		char tag[32];
		void *data;
		snprintf(tag, sizeof(tag), "tail%d", k);
		struct live l = live_open(tag, 1);
		send_n(l.w, CAP);
		t_put64(&l.m, SHMCHAN_OFF_TAIL, bad[k]);
		int64_t t0 = t_now_ns();
		CHECK_RC(shmchan_reserve(l.w, 1, timeouts[k], &data, NULL), -SHMCHAN_ECORRUPT);
		CHECK(t_now_ns() - t0 < T_MS(200));
		CHECK_MSG(strstr(shmchan_channel_diag(l.a), "tail") != NULL, "diag: %s", shmchan_channel_diag(l.a));
		writer_is_poisoned(&l);
		live_close(&l, tag);
	}
}

/* Positions that are already impossible when a writer or reader attaches: attach refuses and poisons. */
static void attach_refuses_corrupt_positions(void)
{
	shmchan_writer *w;
	shmchan_reader *r;
	shmchan_channel *c;
	struct live l = live_open("att", 0);

	t_put64(&l.m, SHMCHAN_OFF_HEAD, CAP + 1);
	CHECK_RC(shmchan_writer_attach(l.a, &w), -SHMCHAN_ECORRUPT);
	CHECK(w == NULL);
	CHECK_RC(shmchan_reader_attach(l.b, &r), -SHMCHAN_ECORRUPT);
	CHECK(r == NULL);
	CHECK(shmchan_channel_diag(l.a)[0] != '\0' && shmchan_channel_diag(l.b)[0] != '\0');
	/* attach failed without keeping its lock: a fresh handle gets ECORRUPT too, not EBUSY */
	CHECK_RC(shmchan_open(t_name("att"), T_MS(500), &c, NULL), 0);
	CHECK_RC(shmchan_writer_attach(c, &w), -SHMCHAN_ECORRUPT);
	shmchan_close(c);
	t_put64(&l.m, SHMCHAN_OFF_HEAD, 0);
	t_put64(&l.m, SHMCHAN_OFF_TAIL, 5); /* tail ahead of head */
	CHECK_RC(shmchan_open(t_name("att"), T_MS(500), &c, NULL), 0);
	CHECK_RC(shmchan_reader_attach(c, &r), -SHMCHAN_ECORRUPT);
	shmchan_close(c);
	/* repaired: a fresh handle works */
	t_put64(&l.m, SHMCHAN_OFF_TAIL, 0);
	CHECK_RC(shmchan_open(t_name("att"), T_MS(500), &c, NULL), 0);
	CHECK_RC(shmchan_writer_attach(c, &w), 0);
	CHECK_RC(shmchan_reader_attach(c, &r), 0);
	shmchan_close(c);
	live_close(&l, "att");
}

/* A side blocked with an infinite timeout, whose peer position turns corrupt, returns ECORRUPT (no hang). */
static void blocked_sides_see_corruption(void)
{
	struct shmchan_msg msg;
	void *data;

	for (int side = 0; side < 2; side++) {
		const char *tag = side ? "blkw" : "blkr";
		struct live l = live_open(tag, 1);
		if (side)
			send_n(l.w, CAP);
		pid_t pid = t_fork();
		if (pid == 0) {
			t_sleep_ms(100);
			if (side)
				t_put64(&l.m, SHMCHAN_OFF_TAIL, CAP + 3);
			else
				t_put64(&l.m, SHMCHAN_OFF_HEAD, CAP + 3);
			_exit(0);
		}
		int64_t t0 = t_now_ns();
		if (side)
			CHECK_RC(shmchan_reserve(l.w, 1, -1, &data, NULL), -SHMCHAN_ECORRUPT);
		else
			CHECK_RC(shmchan_peek(l.r, -1, &msg), -SHMCHAN_ECORRUPT);
		int64_t el = t_now_ns() - t0;
		CHECK_MSG(el < T_MS(1000), "%s: %.1f ms", tag, t_ms(el));
		CHECK_CHILD(pid, 2000, 0);
		live_close(&l, tag);
	}
}

/*
 * A hostile peer flips lens[] while the reader receives: every length the reader reports stays within
 * slot_size (each shared field is read once), or the reader reports ECORRUPT. ASan checks the copies.
 */
static atomic_int flipping;

static void *flipper(void *arg)
{
	struct t_map *m = arg;
	uint64_t i = 0;

	while (atomic_load(&flipping)) {
		size_t slot = (size_t)(i % CAP);
		uint64_t v = (i & 1) ? SLOT : 0;
		if (i % 100003 == 99991)
			v = 1ull << 31;
		t_put64(m, SHMCHAN_LENS_OFFSET + 8 * slot, v);
		i++;
	}
	return NULL;
}

static void racing_length_flips(void)
{
	struct live l = live_open("flip", 1);
	pthread_t th;
	char buf[SLOT];
	uint64_t len;
	long ok = 0, corrupt_at = -1;

	atomic_store(&flipping, 1);
	CHECK(pthread_create(&th, NULL, flipper, &l.m) == 0);
	for (long i = 0; i < 200000; i++) {
		memset(buf, 7, 10);
		int rc = shmchan_send(l.w, buf, 10, 0);
		if (rc) {
			CHECK_RC(rc, -EAGAIN);
		}
		rc = shmchan_recv(l.r, buf, sizeof(buf), &len, 0);
		if (rc == -SHMCHAN_ECORRUPT) {
			corrupt_at = i;
			break;
		}
		CHECK_MSG(rc == 0 || rc == -EAGAIN, "recv %d (%s)", rc, shmchan_strerror(rc));
		if (rc == 0) {
			CHECK_MSG(len <= SLOT, "length %llu escaped the check", (unsigned long long)len);
			ok++;
		}
	}
	atomic_store(&flipping, 0);
	CHECK(pthread_join(th, NULL) == 0);
	printf("  %ld messages received, poisoned at iteration %ld\n", ok, corrupt_at);
	live_close(&l, "flip");
}

int main(void)
{
	int fails = 0;

	t_init();
	fails += t_case("open_rejects_bad_headers", open_rejects_bad_headers, 30);
	fails += t_case("raw_objects_fail_promptly", raw_objects_fail_promptly, 20);
	fails += t_case("fuzzed_identity_bytes", fuzzed_identity_bytes, 30);
	fails += t_case("head_beyond_capacity", head_beyond_capacity, 10);
	fails += t_case("head_moves_backwards", head_moves_backwards, 10);
	fails += t_case("length_beyond_slot", length_beyond_slot, 10);
	fails += t_case("tail_beyond_head", tail_beyond_head, 10);
	fails += t_case("attach_refuses_corrupt_positions", attach_refuses_corrupt_positions, 10);
	fails += t_case("blocked_sides_see_corruption", blocked_sides_see_corruption, 10);
	fails += t_case("racing_length_flips", racing_length_flips, 30);
	return t_done(fails);
}
