# fixture=empty
snapshot-create vm1 s1.xml --redefine
