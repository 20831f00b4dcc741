/* SPDX-License-Identifier: MIT */
/* Sealed channels: nobody can truncate or grow them; peers attach through a descriptor passed over a Unix socket. */
#include <dirent.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "testutil.h"

#ifndef F_SEAL_FUTURE_WRITE
#define F_SEAL_FUTURE_WRITE 0x0010
#endif

static void make_sealed(shmchan_channel **ch)
{
	struct shmchan_config cfg = t_config(256, 8);
	char desc[] = "sealed descriptor";

	cfg.descriptor = desc;
	cfg.descriptor_size = sizeof(desc);
	CHECK_RC(shmchan_create_sealed(&cfg, ch, NULL), 0);
}

static int listen_at(char *path, size_t n)
{
	char dir[256];
	struct sockaddr_un addr;
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	CHECK(s >= 0);
	snprintf(path, n, "%s/sock", t_tmpdir(dir, sizeof(dir)));
	memset(&addr, 0, sizeof(addr));
	addr.sun_family = AF_UNIX;
	strcpy(addr.sun_path, path);
	CHECK(bind(s, (struct sockaddr *)&addr, sizeof(addr)) == 0);
	CHECK(listen(s, 4) == 0);
	return s;
}

static void serve_one(int lsock, shmchan_channel *ch)
{
	int c = accept(lsock, NULL, NULL);
	CHECK(c >= 0);
	CHECK_RC(shmchan_send_fd(c, ch), 0);
	close(c);
}

static void nobody_can_resize_it(void)
{
	shmchan_channel *ch;
	struct shmchan_info info;
	int fd, seals;

	make_sealed(&ch);
	CHECK_RC(shmchan_info(ch, &info), 0);
	CHECK(info.sealed == 1);
	fd = shmchan_channel_fd(ch);
	seals = fcntl(fd, F_GET_SEALS);
	CHECK(seals >= 0 && (seals & F_SEAL_SHRINK) && (seals & F_SEAL_GROW) && (seals & F_SEAL_SEAL));
	CHECK(ftruncate(fd, 0) != 0 && errno == EPERM);
	CHECK(ftruncate(fd, (off_t)info.total_size * 2) != 0 && errno == EPERM);
	CHECK(fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE) != 0 && errno == EPERM); /* seals are final */
	CHECK_RC(shmchan_channel_unlink(ch), -EINVAL);                      /* it has no name */
	shmchan_close(ch);
}

static void peer_attaches_over_a_socket_and_streams(void)
{
	shmchan_channel *ch;
	shmchan_reader *r;
	char path[300];
	int lsock = listen_at(path, sizeof(path));
	pid_t pid;

	make_sealed(&ch);
	pid = t_fork();
	if (pid == 0) {
		shmchan_channel *peer;
		shmchan_writer *w;
		struct shmchan_info info;
		char desc[64];
		uint64_t len;
		if (shmchan_connect(path, 2000000000, 0, &peer, NULL) != 0 || shmchan_writer_attach(peer, &w) != 0)
			t_peer_exit(3);
		if (shmchan_read_descriptor(peer, desc, sizeof(desc), &len) != 0 || strcmp(desc, "sealed descriptor"))
			t_peer_exit(4);
		shmchan_info(peer, &info);
		if (ftruncate(shmchan_channel_fd(peer), 0) == 0 || errno != EPERM) /* a hostile peer cannot */
			t_peer_exit(5);
		for (uint64_t i = 0; i < 10000; i++)
			if (shmchan_send(w, (const char *)&i, sizeof(i), 2000000000) != 0)
				t_peer_exit(6);
		shmchan_close(peer);
		t_peer_exit(0);
	}
	serve_one(lsock, ch);
	CHECK_RC(shmchan_reader_attach(ch, &r), 0);
	for (uint64_t i = 0; i < 10000; i++) {
		uint64_t v = ~0ull, len = 0;
		CHECK_RC(shmchan_recv(r, &v, sizeof(v), &len, 2000000000), 0);
		CHECK(len == sizeof(v) && v == i);
	}
	CHECK(t_wait(pid, 5000) == 0);
	close(lsock);
	shmchan_close(ch);
}

static void peers_through_the_descriptor_have_their_own_locks(void)
{
	shmchan_channel *ch;
	shmchan_writer *w;
	shmchan_reader *r;
	char path[300];
	int lsock = listen_at(path, sizeof(path));
	pid_t pid;
	struct shmchan_msg m;
	int64_t t0;

	make_sealed(&ch);
	CHECK_RC(shmchan_writer_attach(ch, &w), 0);
	pid = t_fork();
	if (pid == 0) {
		shmchan_channel *peer;
		shmchan_writer *w2;
		shmchan_reader *r2;
		if (shmchan_connect(path, 2000000000, 0, &peer, NULL) != 0)
			t_peer_exit(3);
		if (shmchan_writer_attach(peer, &w2) != -EBUSY) /* the creator's writer holds the lock */
			t_peer_exit(4);
		if (shmchan_reader_attach(peer, &r2) != 0)
			t_peer_exit(5);
		printf("reader attached\n");
		fflush(stdout);
		pause(); /* killed by the parent */
		t_peer_exit(0);
	}
	serve_one(lsock, ch);
	/* wait until the child's reader is attached, then kill it: its lock must vanish with it */
	for (int i = 0; i < 200; i++) {
		struct shmchan_stats st;
		CHECK_RC(shmchan_stats(ch, &st), 0);
		if (st.reader_state == 1 && st.reader_alive)
			break;
		t_sleep_ms(10);
	}
	kill(pid, SIGKILL);
	CHECK(t_wait(pid, 5000) == 128 + SIGKILL);
	for (uint32_t i = 0; i < 8; i++)
		CHECK_RC(shmchan_send(w, "x", 1, 0), 0);
	t0 = t_now_ns();
	CHECK_RC(shmchan_send(w, "x", 1, -1), -SHMCHAN_EPEERDEAD);
	CHECK(t_now_ns() - t0 < 1000000000);
	/* and a new reader on the creator's handle takes over */
	CHECK_RC(shmchan_reader_attach(ch, &r), 0);
	CHECK_RC(shmchan_peek(r, 0, &m), 0);
	close(lsock);
	shmchan_close(ch);
}

static void unsealed_descriptors_are_refused(void)
{
	struct shmchan_config cfg = t_config(64, 4);
	const char *name = t_name("unsealed");
	shmchan_channel *ch, *other;
	struct shmchan_diag diag;
	char shm[300];
	int fd;

	CHECK_RC(shmchan_create(name, &cfg, &ch, NULL), 0);
	snprintf(shm, sizeof(shm), "/shmchan.%s", name);
	fd = shm_open(shm, O_RDWR, 0);
	CHECK(fd >= 0);
	CHECK_RC(shmchan_open_fd(fd, 0, 0, &other, &diag), -EPERM);
	CHECK(strstr(diag.message, "not a memfd sealed") != NULL);
	close(fd);
	CHECK_RC(shmchan_open_fd(-1, 0, 0, &other, NULL), -EINVAL);
	CHECK_RC(shmchan_connect("/nonexistent/socket", 100000000, 0, &other, NULL), -ENOENT);
	CHECK_RC(shmchan_channel_unlink(ch), 0);
	shmchan_close(ch);
}

static int open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	CHECK(d != NULL);
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

/* A memfd with a copy of a good channel's image, sealed against resizing and with `seal` too. */
static int hostile_memfd(int seal)
{
	shmchan_channel *src;
	struct shmchan_info info;
	char *image;
	int fd;

	make_sealed(&src);
	CHECK_RC(shmchan_info(src, &info), 0);
	image = malloc((size_t)info.total_size);
	CHECK(image != NULL);
	CHECK(pread(shmchan_channel_fd(src), image, (size_t)info.total_size, 0) == (ssize_t)info.total_size);
	shmchan_close(src);
	fd = memfd_create("hostile", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	CHECK(fd >= 0);
	CHECK(write(fd, image, (size_t)info.total_size) == (ssize_t)info.total_size);
	free(image);
	CHECK(fchmod(fd, 0600) == 0);
	CHECK(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | seal) == 0);
	return fd;
}

/* Sends the byte 'S' with fd, as a server does. */
static void send_S(int sock, int fd)
{
	char byte = 'S';
	struct iovec iov = {&byte, 1};
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr msg;
	struct cmsghdr *cm;

	memset(&msg, 0, sizeof(msg));
	memset(&u, 0, sizeof(u));
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = u.buf;
	msg.msg_controllen = sizeof(u.buf);
	cm = CMSG_FIRSTHDR(&msg);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	CHECK(sendmsg(sock, &msg, MSG_NOSIGNAL) == 1);
}

/*
 * Both sides write a channel: a memfd sealed against writing (F_SEAL_WRITE: the writable mapping
 * fails; F_SEAL_FUTURE_WRITE: none can be made) is refused by the core with -EPERM and a diag
 * naming the seal, from a descriptor and over a socket alike, and nothing stays open.
 */
static void a_memfd_sealed_against_writing_is_refused(void)
{
	static const struct {
		int seal;
		const char *name;
	} cases[] = {{F_SEAL_WRITE, "(F_SEAL_WRITE)"}, {F_SEAL_FUTURE_WRITE, "(F_SEAL_FUTURE_WRITE)"}};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		shmchan_channel *other = NULL;
		struct shmchan_diag diag;
		char path[300];
		int fd = hostile_memfd(cases[i].seal), lsock, before;
		pid_t pid;

		memset(&diag, 0, sizeof(diag));
		CHECK_RC(shmchan_open_fd(fd, T_MS(1000), 0, &other, &diag), -EPERM);
		CHECK(other == NULL);
		CHECK_MSG(strstr(diag.message, cases[i].name) && strstr(diag.message, "sealed against writing"),
			  "diag: %s", diag.message);

		lsock = listen_at(path, sizeof(path));
		pid = t_fork();
		if (pid == 0) {
			int c = accept(lsock, NULL, NULL);

			CHECK(c >= 0);
			send_S(c, fd);
			close(c);
			t_peer_exit(0);
		}
		close(fd);
		before = open_fds();
		memset(&diag, 0, sizeof(diag));
		CHECK_RC(shmchan_connect(path, T_MS(2000), 0, &other, &diag), -EPERM);
		CHECK(other == NULL);
		CHECK_MSG(strstr(diag.message, cases[i].name) != NULL, "diag: %s", diag.message);
		CHECK_MSG(open_fds() == before, "%d descriptors open, %d before", open_fds(), before);
		CHECK_CHILD(pid, 5000, 0);
		close(lsock);
		unlink(path);
	}
}

int main(void)
{
	int failures = 0;

	t_init();
	failures += t_case("nobody_can_resize_it", nobody_can_resize_it, 10);
	failures += t_case("peer_attaches_over_a_socket_and_streams", peer_attaches_over_a_socket_and_streams, 20);
	failures += t_case("peers_through_the_descriptor_have_their_own_locks",
			   peers_through_the_descriptor_have_their_own_locks, 20);
	failures += t_case("unsealed_descriptors_are_refused", unsealed_descriptors_are_refused, 10);
	failures += t_case("a_memfd_sealed_against_writing_is_refused", a_memfd_sealed_against_writing_is_refused, 20);
	return t_done(failures);
}
