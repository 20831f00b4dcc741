root shmchan.fb.Frame
ident SHFR
enum shmchan.fb.PixelFormat ubyte
value 0 Unknown
value 1 GRAY8
value 2 RGB24
value 3 BGR24
value 4 RGBA32
value 5 BGRA32
value 6 NV12
value 7 I420
table shmchan.fb.Frame
field 0 seq ulong
field 1 timestamp_ns ulong
field 2 width uint
field 3 rows ushort
field 4 pixel_format shmchan.fb.PixelFormat
field 5 planes [shmchan.fb.Plane]
field 6 data_offset ulong
field 7 data_size ulong
struct shmchan.fb.Plane 16
field 0 offset ulong
field 1 stride uint
field 2 rows uint
