root shmchan.fb.Frame
ident SHFR
enum shmchan.fb.ColorMatrix ubyte
value 0 RGB
value 1 BT709
value 2 Unspecified
value 3 Reserved
value 4 FCC
value 5 BT470BG
value 6 SMPTE170M
value 7 SMPTE240M
value 8 YCgCo
value 9 BT2020_NCL
value 10 BT2020_CL
value 11 SMPTE2085
value 12 ChromaDerivedNCL
value 13 ChromaDerivedCL
value 14 ICtCp
enum shmchan.fb.ColorPrimaries ubyte
value 0 Reserved0
value 1 BT709
value 2 Unspecified
value 3 Reserved
value 4 BT470M
value 5 BT470BG
value 6 SMPTE170M
value 7 SMPTE240M
value 8 Film
value 9 BT2020
value 10 SMPTE428
value 11 SMPTE431
value 12 SMPTE432
value 22 EBU3213
enum shmchan.fb.ColorRange ubyte
value 0 Unspecified
value 1 Limited
value 2 Full
enum shmchan.fb.ColorTransfer ubyte
value 0 Reserved0
value 1 BT709
value 2 Unspecified
value 3 Reserved
value 4 Gamma22
value 5 Gamma28
value 6 SMPTE170M
value 7 SMPTE240M
value 8 Linear
value 9 Log100
value 10 Log316
value 11 IEC61966_2_4
value 12 BT1361
value 13 SRGB
value 14 BT2020_10
value 15 BT2020_12
value 16 SMPTE2084
value 17 SMPTE428
value 18 ARIB_STD_B67
enum shmchan.fb.FieldOrder ubyte
value 0 Unknown
value 1 Progressive
value 2 TopFirst
value 3 BottomFirst
enum shmchan.fb.PixelFormat ubyte
value 0 Unknown
value 1 GRAY8
value 2 RGB24
value 3 BGR24
value 4 RGBA32
value 5 BGRA32
value 6 NV12
value 7 I420
value 8 YUYV422
value 9 UYVY422
value 10 P010
value 11 YUV422P
value 12 YUV444P
value 13 GRAY16
value 14 RGB48
value 15 YUV420P10
table shmchan.fb.Frame
field 0 seq ulong
field 1 timestamp_ns ulong
field 2 width uint
field 3 height uint
field 4 pixel_format shmchan.fb.PixelFormat
field 5 planes [shmchan.fb.Plane]
field 6 data_offset ulong
field 7 data_size ulong
field 8 pts long
field 9 time_base shmchan.fb.Rational
field 10 duration long
field 11 keyframe bool
field 12 color_matrix shmchan.fb.ColorMatrix
field 13 color_range shmchan.fb.ColorRange
field 14 color_primaries shmchan.fb.ColorPrimaries
field 15 color_transfer shmchan.fb.ColorTransfer
field 16 sample_aspect_ratio shmchan.fb.Rational
field 17 rotation ushort
field 18 field_order shmchan.fb.FieldOrder
struct shmchan.fb.Plane 16
field 0 offset ulong
field 1 stride uint
field 2 rows uint
struct shmchan.fb.Rational 8
field 0 num int
field 1 den int
