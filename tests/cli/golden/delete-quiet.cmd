# fixture=vm1 virsh-options=-q
snapshot-delete vm1 alpha
