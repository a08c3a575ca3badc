# fixture=vm1 virsh-options=-q
snapshot-list vm1 --tree
