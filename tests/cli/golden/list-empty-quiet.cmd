# fixture=empty virsh-options=-q
snapshot-list vm1
