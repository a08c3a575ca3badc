# fixture=vm1
snapshot-create vm1 s1.xml --redefine
