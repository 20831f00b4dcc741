module github.com/shmchan/shmchan/peers/go

go 1.26.0

require (
	github.com/google/flatbuffers v25.12.19+incompatible
	golang.org/x/sys v0.50.0
)
