# fixture=none
snapshot-dumpxml test
