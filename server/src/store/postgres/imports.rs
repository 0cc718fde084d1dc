//! Imports on PostgreSQL: the county roster (花名册导入) and administrative areas
//! (行政区划导入), each applied in one transaction with its run record.
