# fixture=empty
snapshot-create vm1 s1.xml --redefine --current; snapshot-current vm1 --name
