/* CFFI declarations of csrc/include/shmchan.h and csrc/layout.h. "..." makes CFFI take sizes,
   offsets and values from the real headers at build time; tests/test_api_copies.py checks every
   function, field and name here against shmchan.h, so nothing can drift from it. */

enum shmchan_error {
	SHMCHAN_EBADMAGIC = ..., SHMCHAN_EVERSION = ..., SHMCHAN_ECORRUPT = ..., SHMCHAN_EPEERDEAD = ...,
	SHMCHAN_ENOTINIT = ..., SHMCHAN_EENDED = ..., SHMCHAN_EPINNED = ..., SHMCHAN_ENOREADERS = ...,
	SHMCHAN_ENOTREG = ...
};
enum shmchan_kind { SHMCHAN_KIND_SPSC = ..., SHMCHAN_KIND_BROADCAST = ..., SHMCHAN_KIND_STATE = ... };
enum shmchan_policy { SHMCHAN_POLICY_BLOCK = ..., SHMCHAN_POLICY_OVERWRITE = ... };
enum shmchan_msync_policy {
	SHMCHAN_MSYNC_NONE = ..., SHMCHAN_MSYNC_ASYNC = ..., SHMCHAN_MSYNC_SYNC = ..., SHMCHAN_MSYNC_EXPLICIT = ...
};
enum shmchan_offsets {
	SHMCHAN_OFF_MAGIC = ..., SHMCHAN_OFF_VERSION_MAJOR = ..., SHMCHAN_OFF_VERSION_MINOR = ...,
	SHMCHAN_OFF_KIND = ..., SHMCHAN_OFF_FLAGS = ..., SHMCHAN_OFF_CAPACITY = ..., SHMCHAN_OFF_SLOT_SIZE = ...,
	SHMCHAN_OFF_SLOT_STRIDE = ..., SHMCHAN_OFF_SLOT_ALIGN = ..., SHMCHAN_OFF_CREATOR_PID = ...,
	SHMCHAN_OFF_LENS_OFFSET = ..., SHMCHAN_OFF_DATA_OFFSET = ..., SHMCHAN_OFF_TOTAL_SIZE = ...,
	SHMCHAN_OFF_CREATED_NS = ..., SHMCHAN_OFF_DESCRIPTOR_OFFSET = ..., SHMCHAN_OFF_DESCRIPTOR_SIZE = ...,
	SHMCHAN_OFF_HEAD = ..., SHMCHAN_OFF_HEAD_WAKE = ..., SHMCHAN_OFF_W_MESSAGES = ..., SHMCHAN_OFF_W_BYTES = ...,
	SHMCHAN_OFF_W_FULL = ..., SHMCHAN_OFF_W_ABORTS = ..., SHMCHAN_OFF_TAIL = ..., SHMCHAN_OFF_TAIL_WAKE = ...,
	SHMCHAN_OFF_R_MESSAGES = ..., SHMCHAN_OFF_R_BYTES = ..., SHMCHAN_OFF_R_EMPTY = ...,
	SHMCHAN_OFF_READER_WAITING = ..., SHMCHAN_OFF_WRITER_WAITING = ..., SHMCHAN_OFF_WRITER_STATE = ...,
	SHMCHAN_OFF_WRITER_PID = ..., SHMCHAN_OFF_WRITER_GEN = ..., SHMCHAN_OFF_READER_STATE = ...,
	SHMCHAN_OFF_READER_PID = ..., SHMCHAN_OFF_READER_GEN = ..., SHMCHAN_OFF_MAX_READERS = ...,
	SHMCHAN_OFF_POLICY = ..., SHMCHAN_OFF_READERS_OFFSET = ..., SHMCHAN_OFF_SCAN_SEQ = ..., SHMCHAN_OFF_FLOOR = ...,
	SHMCHAN_PLACE_STATE = ..., SHMCHAN_PLACE_PID = ..., SHMCHAN_PLACE_GEN = ..., SHMCHAN_PLACE_CURSOR = ...,
	SHMCHAN_PLACE_MESSAGES = ..., SHMCHAN_PLACE_BYTES = ..., SHMCHAN_PLACE_LOST = ..., SHMCHAN_PLACE_EMPTY = ...
};
#define SHMCHAN_MAX_READERS ...
#define SHMCHAN_READER_PLACE_SIZE ...
#define SHMCHAN_LOCK_READERS ...
#define SHMCHAN_START_LATEST ...
#define SHMCHAN_START_OLDEST ...
#define SHMCHAN_MAGIC ...
#define SHMCHAN_CONTROL_SIZE ...
#define SHMCHAN_LENS_OFFSET ...
#define SHMCHAN_MAX_CAPACITY ...
#define SHMCHAN_MAX_SLOT_SIZE ...
#define SHMCHAN_MIN_SLOT_ALIGN ...
#define SHMCHAN_MAX_SLOT_ALIGN ...
#define SHMCHAN_MAX_TOTAL_SIZE ...
#define SHMCHAN_MAX_DESCRIPTOR_SIZE ...
#define SHMCHAN_LOCK_ATTACH ...
#define SHMCHAN_LOCK_WRITER ...
#define SHMCHAN_LOCK_READER ...

struct shmchan_config {
	uint64_t slot_size;
	uint32_t capacity;
	uint32_t slot_align;
	uint32_t mode;
	uint32_t msync_policy;
	uint32_t descriptor_size;
	const void *descriptor;
	uint32_t kind;
	uint32_t max_readers;
	uint32_t policy;
	...;
};
struct shmchan_diag {
	char message[256];
};
struct shmchan_info {
	uint16_t version_major;
	uint16_t version_minor;
	uint32_t capacity;
	uint64_t slot_size;
	uint64_t slot_stride;
	uint32_t slot_align;
	uint32_t msync_policy;
	uint64_t data_offset;
	uint64_t total_size;
	uint64_t created_ns;
	uint32_t creator_pid;
	int32_t is_creator;
	uint64_t descriptor_size;
	int32_t sealed;
	uint32_t kind;
	uint32_t max_readers;
	uint32_t policy;
	...;
};
struct shmchan_stats {
	uint64_t head;
	uint64_t tail;
	uint64_t messages_written;
	uint64_t bytes_written;
	uint64_t full_waits;
	uint64_t aborts;
	uint64_t messages_read;
	uint64_t bytes_read;
	uint64_t empty_waits;
	uint32_t writer_state;
	uint32_t reader_state;
	uint32_t writer_pid;
	uint32_t reader_pid;
	int32_t writer_alive;
	int32_t reader_alive;
	...;
};
struct shmchan_msg {
	uint64_t pos;
	uint64_t len;
	uint32_t slot;
	uint32_t lost;
	void *data;
	...;
};
struct shmchan_place_info {
	uint32_t index;
	uint32_t state;
	uint32_t pid;
	int32_t alive;
	uint64_t cursor, messages, bytes, lost, empty_waits;
	...;
};

typedef struct shmchan_channel shmchan_channel;
typedef struct shmchan_writer shmchan_writer;
typedef struct shmchan_reader shmchan_reader;

int shmchan_validate_name(const char *name);
uint32_t shmchan_default_slot_align(uint64_t slot_size);
int shmchan_layout_size(const struct shmchan_config *cfg, uint64_t *total_size);
const char *shmchan_strerror(int err);
const char *shmchan_version(void);
int shmchan_layout_major(void);
int shmchan_layout_minor(void);

int shmchan_create(const char *name, const struct shmchan_config *cfg, shmchan_channel **out,
		   struct shmchan_diag *diag);
int shmchan_open(const char *name, int64_t timeout_ns, shmchan_channel **out, struct shmchan_diag *diag);
int shmchan_create_file(const char *path, const struct shmchan_config *cfg, shmchan_channel **out,
			struct shmchan_diag *diag);
int shmchan_open_file(const char *path, int64_t timeout_ns, shmchan_channel **out, struct shmchan_diag *diag);
#define SHMCHAN_OPEN_ALLOW_FOREIGN ...
#define SHMCHAN_CONNECT_EINTR ...
int shmchan_open_ex(const char *name, int64_t timeout_ns, uint32_t flags, shmchan_channel **out,
		    struct shmchan_diag *diag);
int shmchan_open_file_ex(const char *path, int64_t timeout_ns, uint32_t flags, shmchan_channel **out,
			 struct shmchan_diag *diag);
int shmchan_is_stale(const char *name);
int shmchan_create_sealed(const struct shmchan_config *cfg, shmchan_channel **out, struct shmchan_diag *diag);
int shmchan_open_fd(int fd, int64_t timeout_ns, uint32_t flags, shmchan_channel **out, struct shmchan_diag *diag);
int shmchan_channel_fd(const shmchan_channel *ch);
int shmchan_send_fd(int sock, const shmchan_channel *ch);
int shmchan_connect(const char *path, int64_t timeout_ns, uint32_t flags, shmchan_channel **out,
		    struct shmchan_diag *diag);
int shmchan_reclaim_stale(const char *name);
void shmchan_close(shmchan_channel *ch);
int shmchan_channel_unlink(shmchan_channel *ch);
int shmchan_unlink(const char *name);
int shmchan_info(const shmchan_channel *ch, struct shmchan_info *out);
int shmchan_stats(const shmchan_channel *ch, struct shmchan_stats *out);
int shmchan_flush(shmchan_channel *ch);
void *shmchan_slot_address(const shmchan_channel *ch, uint32_t slot);
int shmchan_read_descriptor(const shmchan_channel *ch, void *buf, uint64_t cap, uint64_t *len);
int shmchan_inspect(shmchan_channel *ch, uint64_t pos, void *buf, uint64_t cap, uint64_t *len, uint64_t *first,
		    uint64_t *end);
const char *shmchan_channel_diag(const shmchan_channel *ch);

int shmchan_writer_attach(shmchan_channel *ch, shmchan_writer **out);
void shmchan_writer_close(shmchan_writer *w);
void shmchan_writer_set_spin(shmchan_writer *w, int64_t spin_ns);
void shmchan_writer_continue_wait(shmchan_writer *w);
int shmchan_reserve(shmchan_writer *w, uint64_t nbytes, int64_t timeout_ns, void **data, uint32_t *slot);
int shmchan_commit(shmchan_writer *w, uint64_t nbytes);
int shmchan_abort(shmchan_writer *w);
int shmchan_try_reserve(shmchan_writer *w, uint64_t nbytes, void **data, uint32_t *slot);
void shmchan_writer_end(shmchan_writer *w);
uint64_t shmchan_writer_position(const shmchan_writer *w);
void shmchan_writer_interrupt(shmchan_writer *w);
int shmchan_send(shmchan_writer *w, const char *data, uint64_t nbytes, int64_t timeout_ns);

int shmchan_reader_attach(shmchan_channel *ch, shmchan_reader **out);
void shmchan_reader_close(shmchan_reader *r);
void shmchan_reader_set_spin(shmchan_reader *r, int64_t spin_ns);
void shmchan_reader_continue_wait(shmchan_reader *r);
int shmchan_peek(shmchan_reader *r, int64_t timeout_ns, struct shmchan_msg *msg);
int shmchan_peek_batch(shmchan_reader *r, struct shmchan_msg *msgs, uint32_t max, int64_t timeout_ns);
int shmchan_release(shmchan_reader *r, uint64_t pos);
int shmchan_recv(shmchan_reader *r, void *buf, uint64_t cap, uint64_t *len, int64_t timeout_ns);
uint64_t shmchan_reader_outstanding(const shmchan_reader *r);
int shmchan_reader_attach_ex(shmchan_channel *ch, uint32_t flags, shmchan_reader **out);
int shmchan_check(shmchan_reader *r, uint64_t pos);
int shmchan_wait_readable(shmchan_reader *r, int64_t timeout_ns);
int shmchan_wait_head(shmchan_channel *ch, uint64_t pos, int64_t timeout_ns);
void shmchan_wake_head(shmchan_channel *ch);
int shmchan_wait_head_spin(shmchan_channel *ch, uint64_t pos, int64_t spin_ns, int64_t timeout_ns);
int shmchan_try_peek_batch(shmchan_reader *r, struct shmchan_msg *msgs, uint32_t max);
void shmchan_reader_count_empty(shmchan_reader *r);
void shmchan_interrupt(shmchan_channel *ch);
void shmchan_forget_inherited(shmchan_channel *ch);
uint64_t shmchan_reader_lost(const shmchan_reader *r);
uint64_t shmchan_reader_position(const shmchan_reader *r);
int shmchan_reader_places(const shmchan_channel *ch, struct shmchan_place_info *out, uint32_t max);
int shmchan_kind(const shmchan_channel *ch);
int shmchan_state_read(shmchan_channel *ch, void *buf, uint64_t cap, uint64_t *len, uint64_t *version);
uint64_t shmchan_state_version(const shmchan_channel *ch);
int shmchan_state_wait(shmchan_channel *ch, uint64_t version, int64_t timeout_ns, uint64_t *now);

/* the table of the core's functions for shmchan._core (_capi.h) */
uintptr_t shmchan_capi_address(void);
