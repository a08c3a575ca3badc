# fixture=vm1
snapshot-dumpxml vm1 Beta
