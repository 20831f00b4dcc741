/* SPDX-License-Identifier: MIT */
/* Segments: create/open/unlink of named and file-backed channels, their info, object modes, and opening during initialisation. */
#include "testutil.h"

#include "layout.h"

static void same_info(const struct shmchan_info *a, const struct shmchan_info *b)
{
	CHECK(a->version_major == b->version_major && a->version_minor == b->version_minor);
	CHECK(a->capacity == b->capacity);
	CHECK(a->slot_size == b->slot_size);
	CHECK(a->slot_stride == b->slot_stride);
	CHECK(a->slot_align == b->slot_align);
	CHECK(a->msync_policy == b->msync_policy);
	CHECK(a->data_offset == b->data_offset);
	CHECK(a->total_size == b->total_size);
	CHECK(a->created_ns == b->created_ns);
	CHECK(a->creator_pid == b->creator_pid);
}

static uint64_t realtime_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* A second handle (in this process and in another one) sees the same geometry, creator and creation time. */
static void create_then_open(void)
{
	struct shmchan_config cfg = t_config(1000, 8);
	struct shmchan_info ia, ib;
	struct shmchan_diag diag;
	shmchan_channel *a, *b;
	shmchan_writer *w;
	shmchan_reader *r;
	uint64_t before, after, len;
	char buf[16];
	int fds[2];

	before = realtime_ns();
	CHECK_RC(shmchan_create(t_name("co"), &cfg, &a, &diag), 0);
	after = realtime_ns();
	CHECK_RC(shmchan_open(t_name("co"), T_MS(500), &b, &diag), 0);
	CHECK_RC(shmchan_info(a, &ia), 0);
	CHECK_RC(shmchan_info(b, &ib), 0);
	same_info(&ia, &ib);
	CHECK(ia.is_creator == 1 && ib.is_creator == 0);
	CHECK(ia.creator_pid == (uint32_t)getpid());
	CHECK_MSG(ia.created_ns >= before && ia.created_ns <= after, "created_ns %llu not in [%llu, %llu]",
		  (unsigned long long)ia.created_ns, (unsigned long long)before, (unsigned long long)after);
	CHECK(ia.capacity == 8 && ia.slot_size == 1000 && ia.msync_policy == 0);
	CHECK(ia.version_major == shmchan_layout_major() && ia.version_minor == shmchan_layout_minor());

	/* the same from another process */
	t_pipe(fds);
	pid_t pid = t_fork();
	if (pid == 0) {
		shmchan_channel *c;
		struct shmchan_info ic;
		close(fds[0]);
		CHECK_RC(shmchan_open(t_name("co"), T_MS(500), &c, NULL), 0);
		CHECK_RC(shmchan_info(c, &ic), 0);
		CHECK(write(fds[1], &ic, sizeof(ic)) == (ssize_t)sizeof(ic));
		shmchan_close(c);
		t_peer_exit(0);
	}
	close(fds[1]);
	struct shmchan_info ic;
	CHECK(read(fds[0], &ic, sizeof(ic)) == (ssize_t)sizeof(ic));
	close(fds[0]);
	CHECK_CHILD(pid, 5000, 0);
	same_info(&ia, &ic);
	CHECK(ic.is_creator == 0);

	/* both handles reach the same memory */
	CHECK_RC(shmchan_writer_attach(a, &w), 0);
	CHECK_RC(shmchan_reader_attach(b, &r), 0);
	CHECK_RC(shmchan_send(w, "via a", 5, 0), 0);
	CHECK_RC(shmchan_recv(r, buf, sizeof(buf), &len, 0), 0);
	CHECK(len == 5 && memcmp(buf, "via a", 5) == 0);
	CHECK_RC(shmchan_info(NULL, &ia), -EINVAL);
	CHECK_RC(shmchan_info(a, NULL), -EINVAL);
	CHECK_RC(shmchan_stats(NULL, NULL), -EINVAL);
	shmchan_close(b);
	shmchan_close(a);
	shmchan_close(NULL);
	CHECK_RC(shmchan_unlink(t_name("co")), 0);
}

static void create_twice_and_open_missing(void)
{
	struct shmchan_config cfg = t_config(64, 4);
	struct shmchan_config other = t_config(128, 16);
	struct shmchan_info ia, ib;
	struct shmchan_diag diag;
	shmchan_channel *a, *b;

	CHECK_RC(shmchan_create(t_name("twice"), &cfg, &a, &diag), 0);
	b = (shmchan_channel *)(uintptr_t)1;
	diag.message[0] = '\0';
	CHECK_RC(shmchan_create(t_name("twice"), &other, &b, &diag), -EEXIST);
	CHECK(b == NULL);
	CHECK(diag.message[0] != '\0');
	/* the existing channel was not touched */
	CHECK_RC(shmchan_open(t_name("twice"), T_MS(100), &b, &diag), 0);
	CHECK_RC(shmchan_info(a, &ia), 0);
	CHECK_RC(shmchan_info(b, &ib), 0);
	same_info(&ia, &ib);
	CHECK(ib.capacity == 4 && ib.slot_size == 64);
	shmchan_close(b);
	shmchan_close(a);
	/* closing the creator does not unlink: it still exists and still refuses a create */
	CHECK_RC(shmchan_create(t_name("twice"), &cfg, &a, &diag), -EEXIST);
	CHECK_RC(shmchan_unlink(t_name("twice")), 0);

	b = (shmchan_channel *)(uintptr_t)1;
	diag.message[0] = '\0';
	CHECK_RC(shmchan_open(t_name("missing"), T_MS(100), &b, &diag), -ENOENT);
	CHECK(b == NULL);
	CHECK(diag.message[0] != '\0');
	CHECK_RC(shmchan_open(t_name("missing"), 0, &b, NULL), -ENOENT);
	CHECK_RC(shmchan_unlink(t_name("missing")), -ENOENT);
	CHECK_RC(shmchan_open(t_name("missing"), T_MS(100), NULL, NULL), -EINVAL);
	CHECK_RC(shmchan_create(t_name("missing"), &cfg, NULL, NULL), -EINVAL);
}

static mode_t object_mode(const char *name)
{
	char path[300];
	struct stat st;

	t_shm_path(path, sizeof(path), name);
	CHECK(stat(path, &st) == 0);
	return st.st_mode & 07777;
}

static void check_mode(mode_t umask_value, uint32_t cfg_mode, mode_t want)
{
	struct shmchan_config cfg = t_config(64, 4);
	shmchan_channel *ch;
	mode_t old = umask(umask_value);

	cfg.mode = cfg_mode;
	CHECK_RC(shmchan_create(t_name("mode"), &cfg, &ch, NULL), 0);
	umask(old);
	mode_t got = object_mode(t_name("mode"));
	CHECK_MSG(got == want, "umask %03o, cfg.mode %03o: object mode %03o, wanted %03o", (unsigned)umask_value,
		  cfg_mode, (unsigned)got, (unsigned)want);
	CHECK_RC(shmchan_channel_unlink(ch), 0);
	shmchan_close(ch);
}

/* The object mode is exactly 0600, or exactly cfg.mode, whatever the umask. */
static void object_mode_ignores_umask(void)
{
	check_mode(000, 0, 0600);
	check_mode(022, 0, 0600);
	check_mode(077, 0, 0600);
	check_mode(0777, 0, 0600);
	check_mode(000, 0640, 0640);
	check_mode(077, 0640, 0640);
	check_mode(077, 0660, 0660);
	check_mode(022, 0666, 0666);
	check_mode(000, 0400, 0400);
}

static void file_round_trip(const char *dir, uint32_t policy)
{
	struct shmchan_config cfg = t_config(256, 4);
	struct shmchan_info ia, ib;
	struct shmchan_stats st;
	struct shmchan_diag diag;
	shmchan_channel *a, *b;
	shmchan_writer *w;
	shmchan_reader *r;
	char path[4200], buf[256], msg[64];
	struct stat sb;
	uint64_t len, total;
	int i;

	snprintf(path, sizeof(path), "%s/chan-%u", dir, policy);
	cfg.msync_policy = policy;
	CHECK_RC(shmchan_layout_size(&cfg, &total), 0);
	CHECK_RC(shmchan_create_file(path, &cfg, &a, &diag), 0);
	CHECK(stat(path, &sb) == 0);
	CHECK_MSG((sb.st_mode & 07777) == 0600, "file mode %03o", (unsigned)(sb.st_mode & 07777));
	CHECK((uint64_t)sb.st_size == total);
	CHECK_RC(shmchan_create_file(path, &cfg, &b, &diag), -EEXIST);
	CHECK(b == NULL);
	CHECK_RC(shmchan_open_file(path, T_MS(500), &b, &diag), 0);
	CHECK_RC(shmchan_info(a, &ia), 0);
	CHECK_RC(shmchan_info(b, &ib), 0);
	same_info(&ia, &ib);
	CHECK(ia.msync_policy == policy && ib.msync_policy == policy);
	CHECK_RC(shmchan_writer_attach(a, &w), 0);
	CHECK_RC(shmchan_reader_attach(b, &r), 0);
	for (i = 0; i < 20; i++) {
		int n = snprintf(msg, sizeof(msg), "file message %d policy %u", i, policy);
		CHECK_RC(shmchan_send(w, msg, (uint64_t)n, 0), 0);
		if (i % 3 == 2)
			CHECK_RC(shmchan_flush(a), 0);
		CHECK_RC(shmchan_recv(r, buf, sizeof(buf), &len, 0), 0);
		CHECK(len == (uint64_t)n && memcmp(buf, msg, len) == 0);
	}
	/* 4 messages left in the file, to be read after both handles closed */
	for (i = 0; i < 4; i++) {
		int n = snprintf(msg, sizeof(msg), "kept %d", i);
		CHECK_RC(shmchan_send(w, msg, (uint64_t)n, 0), 0);
	}
	CHECK_RC(shmchan_flush(a), 0);
	CHECK_RC(shmchan_flush(NULL), -EINVAL);
	shmchan_close(b);
	shmchan_close(a);

	/* the file persists: another process opens it and reads what was left */
	pid_t pid = t_fork();
	if (pid == 0) {
		shmchan_channel *c;
		CHECK_RC(shmchan_open_file(path, T_MS(500), &c, NULL), 0);
		CHECK_RC(shmchan_stats(c, &st), 0);
		CHECK(st.head == 24 && st.tail == 20 && st.messages_written == 24 && st.messages_read == 20);
		CHECK(st.writer_state == 2 && st.reader_state == 2);
		CHECK_RC(shmchan_reader_attach(c, &r), 0);
		for (i = 0; i < 4; i++) {
			int n = snprintf(msg, sizeof(msg), "kept %d", i);
			CHECK_RC(shmchan_recv(r, buf, sizeof(buf), &len, 0), 0);
			CHECK(len == (uint64_t)n && memcmp(buf, msg, len) == 0);
		}
		CHECK_RC(shmchan_recv(r, buf, sizeof(buf), &len, 0), -SHMCHAN_EENDED);
		shmchan_close(c);
		t_peer_exit(0);
	}
	CHECK_CHILD(pid, 5000, 0);
	CHECK_RC(shmchan_open_file(path, T_MS(500), &a, &diag), 0);
	CHECK_RC(shmchan_channel_unlink(a), 0);
	CHECK(!t_exists(path));
	shmchan_close(a);
	CHECK_RC(shmchan_open_file(path, T_MS(100), &a, &diag), -ENOENT);
	CHECK(a == NULL);
}

/* File-backed channels work end to end under each msync policy, and persist across handles. */
static void file_backed_each_policy(void)
{
	char dir[256];
	shmchan_channel *ch;
	struct shmchan_config cfg = t_config(64, 4);

	CHECK(t_tmpdir(dir, sizeof(dir)) != NULL);
	for (uint32_t p = SHMCHAN_MSYNC_NONE; p <= SHMCHAN_MSYNC_EXPLICIT; p++)
		file_round_trip(dir, p);
	CHECK_RC(shmchan_create_file("", &cfg, &ch, NULL), -EINVAL);
	CHECK_RC(shmchan_create_file(NULL, &cfg, &ch, NULL), -EINVAL);
	CHECK_RC(shmchan_open_file("", 0, &ch, NULL), -EINVAL);
	cfg.msync_policy = 4;
	char path[400];
	snprintf(path, sizeof(path), "%s/bad", dir);
	CHECK_RC(shmchan_create_file(path, &cfg, &ch, NULL), -EINVAL);
	CHECK(!t_exists(path));
	CHECK(rmdir(dir) == 0);
}

/* shmchan_unlink removes the name at once; mapped handles keep working; the name can be reused. */
static void unlink_by_name(void)
{
	struct shmchan_config cfg = t_config(64, 4);
	struct shmchan_info i1, i2;
	shmchan_channel *a, *b;
	shmchan_writer *w, *w2;
	shmchan_reader *r;
	char path[300], buf[8];
	uint64_t len;

	t_shm_path(path, sizeof(path), t_name("unl"));
	CHECK_RC(shmchan_create(t_name("unl"), &cfg, &a, NULL), 0);
	CHECK_RC(shmchan_writer_attach(a, &w), 0);
	CHECK_RC(shmchan_reader_attach(a, &r), 0);
	CHECK(t_exists(path));
	CHECK_RC(shmchan_unlink(t_name("unl")), 0);
	CHECK(!t_exists(path));
	CHECK_RC(shmchan_unlink(t_name("unl")), -ENOENT);
	CHECK_RC(shmchan_open(t_name("unl"), T_MS(100), &b, NULL), -ENOENT);
	CHECK_RC(shmchan_send(w, "still", 5, 0), 0);
	CHECK_RC(shmchan_recv(r, buf, sizeof(buf), &len, 0), 0);
	CHECK(len == 5 && memcmp(buf, "still", 5) == 0);
	/* a new channel under the same name is a different object */
	t_sleep_ms(1);
	CHECK_RC(shmchan_create(t_name("unl"), &cfg, &b, NULL), 0);
	CHECK_RC(shmchan_writer_attach(b, &w2), 0); /* not busy: the old writer is on the old object */
	CHECK_RC(shmchan_info(a, &i1), 0);
	CHECK_RC(shmchan_info(b, &i2), 0);
	CHECK(i1.created_ns != i2.created_ns);
	CHECK_RC(shmchan_channel_unlink(b), 0);
	CHECK(!t_exists(path));
	CHECK_RC(shmchan_channel_unlink(b), -ENOENT);
	CHECK_RC(shmchan_channel_unlink(NULL), -EINVAL);
	shmchan_close(b);
	shmchan_close(a);
}

/*
 * A creator that holds the attach lock but has not published the header yet: open waits for it up
 * to its timeout (ENOTINIT after the timeout), and succeeds once the magic appears.
 * The "creator" is simulated by hand: a raw object, a read lock on byte 0, a header copied later.
 */
static void open_waits_for_initialising_creator(int64_t long_timeout)
{
	struct shmchan_config cfg = t_config(64, 4);
	shmchan_channel *tmpl, *ch;
	struct shmchan_diag diag;
	char name[128], shm[200];
	uint64_t v;
	int fds[2];

	t_name_buf(name, sizeof(name), "init");
	CHECK_RC(shmchan_create(t_name("tmpl"), &cfg, &tmpl, NULL), 0);
	t_pipe(fds);
	pid_t pid = t_fork();
	if (pid == 0) {
		struct flock fl = {.l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1};
		struct t_map src = t_map_object(t_name("tmpl")), dst;
		snprintf(shm, sizeof(shm), "/shmchan.%s", name);
		int fd = shm_open(shm, O_RDWR | O_CREAT | O_EXCL, 0600);
		CHECK(fd >= 0);
		CHECK(fcntl(fd, F_OFD_SETLK, &fl) == 0);
		t_put_u64(fds[1], 1); /* created and locked, header not written */
		t_sleep_ms(200);
		CHECK(ftruncate(fd, (off_t)src.size) == 0);
		dst = t_map_object(name);
		memcpy(dst.base + 8, src.base + 8, src.size - 8);
		t_put64(&dst, SHMCHAN_OFF_MAGIC, t_get64(&src, SHMCHAN_OFF_MAGIC));
		t_sleep_ms(100); /* keep holding the lock a while after publishing */
		t_peer_exit(0);
	}
	close(fds[1]);
	CHECK_RC(t_get_u64(fds[0], &v, 5000), 0);
	/* not initialised, creator alive: waits the whole timeout */
	int64_t t0 = t_now_ns();
	diag.message[0] = '\0';
	CHECK_RC(shmchan_open(name, T_MS(50), &ch, &diag), -SHMCHAN_ENOTINIT);
	int64_t el = t_now_ns() - t0;
	CHECK_MSG(el >= T_MS(50) && el < T_MS(250), "ENOTINIT after %.1f ms", t_ms(el));
	CHECK(ch == NULL && diag.message[0] != '\0');
	CHECK_RC(shmchan_open(name, 0, &ch, NULL), -SHMCHAN_ENOTINIT);
	/* and with a longer timeout it gets the channel once the header is published */
	t0 = t_now_ns();
	CHECK_RC(shmchan_open(name, long_timeout, &ch, &diag), 0);
	el = t_now_ns() - t0;
	CHECK_MSG(el >= T_MS(100) && el < T_MS(2000), "open took %.1f ms", t_ms(el));
	struct shmchan_info info;
	CHECK_RC(shmchan_info(ch, &info), 0);
	CHECK(info.capacity == 4 && info.slot_size == 64);
	shmchan_close(ch);
	CHECK_CHILD(pid, 5000, 0);
	shmchan_close(tmpl);
}

static void open_waits_5s(void)
{
	open_waits_for_initialising_creator(T_MS(5000));
}

static void open_waits_forever(void)
{
	open_waits_for_initialising_creator(-1);
}

/* A "wait practically forever" timeout (INT64_MAX ns) must wait, not overflow the deadline. */
static void open_waits_int64_max(void)
{
	open_waits_for_initialising_creator(INT64_MAX);
}

/*
 * Opening while another process creates the channel: the only outcomes are the channel or ENOENT.
 * ENOTINIT would mean open saw the new object before the creator took its attach lock and gave up at
 * once, although the caller allowed a long timeout for exactly this case.
 */
static void open_racing_create(void)
{
	struct shmchan_config cfg = t_config(64, 4);
	struct shmchan_diag diag;
	char name[128];
	long opened = 0, missing = 0, early = 0, early_empty = 0, early_nomagic = 0;
	int fds[2];
	uint64_t v;

	t_name_buf(name, sizeof(name), "race");
	t_pipe(fds);
	pid_t pid = t_fork();
	if (pid == 0) {
		const int64_t end = t_now_ns() + T_MS(800);
		close(fds[0]);
		t_put_u64(fds[1], 1);
		while (t_now_ns() < end) {
			shmchan_channel *c;
			int rc = shmchan_create(name, &cfg, &c, NULL);
			if (rc == -EEXIST)
				continue; /* the parent's open raced our unlink; try again */
			CHECK_RC(rc, 0);
			CHECK_RC(shmchan_channel_unlink(c), 0);
			shmchan_close(c);
		}
		t_peer_exit(0);
	}
	close(fds[1]);
	CHECK_RC(t_get_u64(fds[0], &v, 5000), 0);
	const int64_t end = t_now_ns() + T_MS(700);
	while (t_now_ns() < end) {
		shmchan_channel *c;
		int64_t t0 = t_now_ns();
		int rc = shmchan_open(name, T_MS(1000), &c, &diag);
		if (rc == 0) {
			opened++;
			shmchan_close(c);
		} else if (rc == -ENOENT) {
			missing++;
		} else {
			CHECK_MSG(rc == -SHMCHAN_ENOTINIT, "open returned %d (%s): %s", rc, shmchan_strerror(rc), diag.message);
			if (t_now_ns() - t0 < T_MS(1000)) {
				early++;
				/* before the creator's lock: size 0; or the creator finished between two checks: magic 0 */
				if (strstr(diag.message, "0 bytes") && early_empty++ == 0)
					fprintf(stderr, "open gave up after %.3f ms with timeout 1000 ms: %s\n",
						t_ms(t_now_ns() - t0), diag.message);
				if (strstr(diag.message, "magic is zero") && early_nomagic++ == 0)
					fprintf(stderr, "open gave up after %.3f ms with timeout 1000 ms: %s\n",
						t_ms(t_now_ns() - t0), diag.message);
			}
		}
	}
	CHECK_CHILD(pid, 5000, 0);
	printf("  opened %ld, ENOENT %ld, early ENOTINIT %ld (%ld on an empty object, %ld on a zero magic)\n", opened,
	       missing, early, early_empty, early_nomagic);
	CHECK_MSG(early == 0, "%ld opens returned ENOTINIT long before their timeout while a creator was initialising",
		  early);
}

int main(void)
{
	int fails = 0;

	t_init();
	fails += t_case("create_then_open", create_then_open, 10);
	fails += t_case("create_twice_and_open_missing", create_twice_and_open_missing, 10);
	fails += t_case("object_mode_ignores_umask", object_mode_ignores_umask, 10);
	fails += t_case("file_backed_each_policy", file_backed_each_policy, 20);
	fails += t_case("unlink_by_name", unlink_by_name, 10);
	fails += t_case("open_waits_for_initialising_creator", open_waits_5s, 10);
	fails += t_case("open_waits_forever_for_initialising_creator", open_waits_forever, 10);
	fails += t_case("open_timeout_int64_max_waits", open_waits_int64_max, 10);
	fails += t_case("open_racing_create_never_gives_up_early", open_racing_create, 15);
	return t_done(fails);
}
