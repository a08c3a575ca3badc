# fixture=empty
snapshot-create vm1 s2.xml --redefine
