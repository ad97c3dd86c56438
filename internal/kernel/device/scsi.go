package device

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
)

// fillSCSI sets the identity of a SCSI device from its sysfs directory dev
// (.../H:C:T:L): the wwid attribute (drivers/scsi/scsi_sysfs.c, which fills it
// with scsi_vpd_lun_id), else the same string computed by LunID from the
// vpd_pg83 attribute, which older kernels export without wwid.
// A device that has neither gets an empty ID: Info.Key refuses it later.
func fillSCSI(info *Info, dev string) error {
	wwid, err := readText(filepath.Join(dev, "wwid"))
	if err != nil {
		return err
	}
	if wwid == "" {
		page, err := readAttr(filepath.Join(dev, "vpd_pg83"))
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return err
		default:
			if wwid, err = LunID(page); err != nil {
				return fmt.Errorf("%s: %w", filepath.Join(dev, "vpd_pg83"), err)
			}
		}
	}
	info.ID = wwid
	info.LUID = wwid
	return nil
}
