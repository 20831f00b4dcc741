root frame_v1.Frame
ident SHFR
enum frame_v1.PixelFormat ubyte
value 0 Unknown
value 1 GRAY8
value 2 RGB24
value 3 BGR24
value 4 RGBA32
value 5 BGRA32
value 6 NV12
value 7 I420
table frame_v1.Frame
field 0 seq ulong
field 1 timestamp_ns ulong
field 2 width uint
field 3 height uint
field 4 pixel_format frame_v1.PixelFormat
field 5 planes [frame_v1.Plane]
field 6 data_offset ulong
field 7 data_size ulong
struct frame_v1.Plane 16
field 0 offset ulong
field 1 stride uint
field 2 rows uint
