/* SPDX-License-Identifier: MIT */
/* Channel names: which ones shmchan_validate_name accepts, and that create/open/unlink refuse bad ones before any syscall. */
#include "testutil.h"

struct bad_name {
	const char *name;
	int want;
};

static char long247[248], long248[249], long300[301];

static void make_long_names(void)
{
	memset(long247, 'a', 247);
	long247[247] = '\0';
	memset(long248, 'b', 248);
	long248[248] = '\0';
	memset(long300, 'c', 300);
	long300[300] = '\0';
}

static void accepts_valid_names(void)
{
	static const char *const good[] = {"a", "cam0", "a.b-c_d", "Z", "0", "9lives", "a..b", "a-", "a.",
					   "UPPER_lower-09.x", "_leading_underscore"};
	make_long_names();
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		CHECK_MSG(shmchan_validate_name(good[i]) == 0, "\"%s\" refused", good[i]);
	CHECK_RC(shmchan_validate_name(long247), 0);
}

static void rejects_invalid_names(void)
{
	make_long_names();
	const struct bad_name bad[] = {
		{"", -EINVAL},	     {"/", -EINVAL},	    {"/a", -EINVAL},	     {"a/b", -EINVAL},
		{".", -EINVAL},	     {"..", -EINVAL},	    {".x", -EINVAL},	     {"-x", -EINVAL},
		{"a b", -EINVAL},    {" a", -EINVAL},	    {"a\tb", -EINVAL},	     {"a\nb", -EINVAL},
		{"caf\xc3\xa9", -EINVAL}, {"\xff", -EINVAL}, {"a\x80", -EINVAL},     {"a:b", -EINVAL},
		{"a\\b", -EINVAL},   {"a*", -EINVAL},	    {"a%s", -EINVAL},	     {"~a", -EINVAL},
		{long248, -ENAMETOOLONG}, {long300, -ENAMETOOLONG},
	};
	CHECK_RC(shmchan_validate_name(NULL), -EINVAL);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = shmchan_validate_name(bad[i].name);
		CHECK_MSG(rc == bad[i].want, "name #%zu (\"%.40s\", %zu chars): got %d (%s), wanted %d", i, bad[i].name,
			  strlen(bad[i].name), rc, shmchan_strerror(rc), bad[i].want);
	}
}

/* create, open and unlink with a bad name return the validation error, leave *out NULL, create nothing. */
static void bad_names_create_nothing(void)
{
	make_long_names();
	const struct bad_name bad[] = {
		{"", -EINVAL},	   {"/", -EINVAL},    {"/a", -EINVAL},	     {"a/b", -EINVAL}, {".", -EINVAL},
		{"..", -EINVAL},   {".x", -EINVAL},   {"-x", -EINVAL},	     {"a b", -EINVAL}, {"caf\xc3\xa9", -EINVAL},
		{long248, -ENAMETOOLONG}, {long300, -ENAMETOOLONG},
	};
	struct shmchan_config cfg = t_config(64, 4);
	struct shmchan_diag diag;
	shmchan_channel *ch;
	char path[512];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ch = (shmchan_channel *)(uintptr_t)1;
		diag.message[0] = '\0';
		int rc = shmchan_create(bad[i].name, &cfg, &ch, &diag);
		if (rc == 0) { /* accepted: remove what it made before failing */
			(void)shmchan_channel_unlink(ch);
			shmchan_close(ch);
		}
		CHECK_MSG(rc == bad[i].want, "create(\"%.40s\") returned %d (%s)", bad[i].name, rc, shmchan_strerror(rc));
		CHECK(ch == NULL);
		CHECK_MSG(diag.message[0] != '\0', "no diagnostic for \"%.40s\"", bad[i].name);
		t_shm_path(path, sizeof(path), bad[i].name);
		CHECK_MSG(!t_exists(path), "create(\"%.40s\") left %s", bad[i].name, path);

		ch = (shmchan_channel *)(uintptr_t)1;
		CHECK_RC(shmchan_open(bad[i].name, 0, &ch, NULL), bad[i].want);
		CHECK(ch == NULL);
		CHECK_RC(shmchan_unlink(bad[i].name), bad[i].want);
	}
	ch = (shmchan_channel *)(uintptr_t)1;
	CHECK_RC(shmchan_create(NULL, &cfg, &ch, &diag), -EINVAL);
	CHECK(ch == NULL);
	CHECK_RC(shmchan_open(NULL, 0, &ch, NULL), -EINVAL);
	CHECK_RC(shmchan_unlink(NULL), -EINVAL);
	/* a bad name with a bad geometry too: still nothing created, no crash with diag NULL */
	cfg.capacity = 3;
	CHECK(shmchan_create("..", &cfg, &ch, NULL) < 0);
	CHECK(!t_exists("/dev/shm/shmchan..."));
}

/* The longest valid name (247 chars: /dev/shm/shmchan.<name> is exactly NAME_MAX) works end to end. */
static void longest_name_end_to_end(void)
{
	char name[256], too_long[256], suffix[32], path[300];
	struct shmchan_config cfg = t_config(64, 4);
	struct shmchan_diag diag;
	shmchan_channel *a, *b;
	shmchan_writer *w;
	shmchan_reader *r;
	uint64_t len;
	char buf[8];
	size_t n;

	/* "ctest-" + padding + "-<pid>" so that t_cleanup finds it */
	snprintf(suffix, sizeof(suffix), "-%ld", (long)t_main_pid());
	strcpy(name, "ctest-");
	n = strlen(name);
	while (n < 247 - strlen(suffix))
		name[n++] = 'L';
	name[n] = '\0';
	strcat(name, suffix);
	CHECK(strlen(name) == 247);
	strcpy(too_long, name);
	memmove(too_long + 1, too_long, strlen(too_long) + 1);
	too_long[0] = 'X';
	CHECK(strlen(too_long) == 248);

	CHECK_RC(shmchan_create(name, &cfg, &a, &diag), 0);
	CHECK_RC(shmchan_open(name, T_MS(100), &b, &diag), 0);
	t_shm_path(path, sizeof(path), name);
	CHECK(t_exists(path));
	CHECK_RC(shmchan_writer_attach(a, &w), 0);
	CHECK_RC(shmchan_reader_attach(b, &r), 0);
	CHECK_RC(shmchan_send(w, "long", 4, 0), 0);
	CHECK_RC(shmchan_recv(r, buf, sizeof(buf), &len, 0), 0);
	CHECK(len == 4 && memcmp(buf, "long", 4) == 0);
	shmchan_close(b);
	shmchan_close(a);
	CHECK_RC(shmchan_unlink(name), 0);
	CHECK(!t_exists(path));
	CHECK_RC(shmchan_unlink(name), -ENOENT);

	CHECK_RC(shmchan_create(too_long, &cfg, &a, &diag), -ENAMETOOLONG);
	CHECK(a == NULL);
}

int main(void)
{
	int fails = 0;

	t_init();
	fails += t_case("accepts_valid_names", accepts_valid_names, 10);
	fails += t_case("rejects_invalid_names", rejects_invalid_names, 10);
	fails += t_case("bad_names_create_nothing", bad_names_create_nothing, 10);
	fails += t_case("longest_name_end_to_end", longest_name_end_to_end, 10);
	return t_done(fails);
}
