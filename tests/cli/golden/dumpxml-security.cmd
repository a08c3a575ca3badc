# fixture=vm1
snapshot-dumpxml vm1 base --security-info
