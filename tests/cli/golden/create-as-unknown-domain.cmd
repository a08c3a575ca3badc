# fixture=none
snapshot-create-as nodom s1
