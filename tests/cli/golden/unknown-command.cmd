# fixture=none
snapshot-frob test
