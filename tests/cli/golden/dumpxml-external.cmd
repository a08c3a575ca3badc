# fixture=vm1
snapshot-dumpxml vm1 ext-mem
