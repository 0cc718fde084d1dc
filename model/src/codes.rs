//! Code lists (代码表) as Rust enums with their national codes, Chinese labels and the
//! code-list version that introduced each value. Codes equal the protocol's enum numbers,
//! so conversion at the edges is `from_code(number)`.

use serde::{Deserialize, Serialize};

/// Version of the code tables in this build. Bump when a list gains values, and record the
/// version on the new values so that old records can still be read with their old meaning.
pub const CODE_LIST_VERSION: u32 = 2;

/// Common behaviour of every code list.
pub trait CodeList: Sized + Copy + 'static {
    /// Every value of the list, in code order.
    const ALL: &'static [Self];
    /// The national (or protocol) code.
    fn code(self) -> i32;
    /// The label officials read, in Simplified Chinese.
    fn label_zh(self) -> &'static str;
    /// The code-list version that introduced this value.
    fn since_version(self) -> u32;
    /// Look a value up by code.
    fn from_code(code: i32) -> Option<Self> {
        Self::ALL.iter().copied().find(|value| value.code() == code)
    }
    /// Look a value up by its Chinese label (used by roster import).
    fn from_label_zh(label: &str) -> Option<Self> {
        let label = label.trim();
        Self::ALL
            .iter()
            .copied()
            .find(|value| value.label_zh() == label)
    }
}

macro_rules! code_list {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $code:literal, $label:literal, $since:literal;)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant,)+ }

        impl CodeList for $name {
            const ALL: &'static [Self] = &[$(Self::$variant,)+];
            fn code(self) -> i32 { match self { $(Self::$variant => $code,)+ } }
            fn label_zh(self) -> &'static str { match self { $(Self::$variant => $label,)+ } }
            fn since_version(self) -> u32 { match self { $(Self::$variant => $since,)+ } }
        }
    };
}

code_list!(
    /// 贫困户属性 household attribute.
    HouseholdAttribute {
        General = 1, "一般贫困户", 1;
        Dibao = 2, "低保贫困户", 1;
        Tekun = 3, "特困供养贫困户", 1;
    }
);

code_list!(
    /// 致贫原因 poverty cause: national codes 01–11, plus 因婚/因丧/其他 from version 2.
    PovertyCause {
        Illness = 1, "因病", 1;
        Disability = 2, "因残", 1;
        Schooling = 3, "因学", 1;
        Disaster = 4, "因灾", 1;
        LackOfLand = 5, "缺土地", 1;
        LackOfWater = 6, "缺水", 1;
        LackOfSkills = 7, "缺技术", 1;
        LackOfLabour = 8, "缺劳动力", 1;
        LackOfCapital = 9, "缺资金", 1;
        PoorTransport = 10, "交通条件落后", 1;
        LackOfMotivation = 11, "自身发展动力不足", 1;
        Marriage = 12, "因婚", 2;
        Funeral = 13, "因丧", 2;
        Other = 99, "其他", 2;
    }
);

code_list!(
    /// 住房安全等级 housing danger level; A/B are safe, C is 局部危房, D is 整幢危房.
    HousingDangerLevel {
        A = 1, "A级", 1;
        B = 2, "B级", 1;
        C = 3, "C级(局部危房)", 1;
        D = 4, "D级(整幢危房)", 1;
    }
);

impl HousingDangerLevel {
    /// 住房安全有保障: A and B pass; C and D fail until renovated.
    pub fn is_safe(self) -> bool {
        matches!(self, Self::A | Self::B)
    }
}

code_list!(
    /// 与户主关系 relation to the household head.
    Relation {
        Head = 1, "户主", 1;
        Spouse = 2, "配偶", 1;
        Son = 3, "之子", 1;
        Daughter = 4, "之女", 1;
        DaughterInLaw = 5, "之儿媳", 1;
        SonInLaw = 6, "之女婿", 1;
        Grandson = 7, "之孙子", 1;
        Granddaughter = 8, "之孙女", 1;
        Parent = 9, "之父母", 1;
        Grandparent = 10, "之祖父母", 1;
        Sibling = 11, "之兄弟姐妹", 1;
        Other = 99, "其他", 1;
    }
);

code_list!(
    /// 性别 sex (GB/T 2261.1).
    Sex {
        Male = 1, "男", 1;
        Female = 2, "女", 1;
    }
);

code_list!(
    /// 健康状况 health.
    Health {
        Healthy = 1, "健康", 1;
        ChronicIllness = 2, "长期慢性病", 1;
        SeriousIllness = 3, "患有大病", 1;
        Disabled = 4, "残疾", 1;
    }
);

code_list!(
    /// 劳动能力 labour capacity.
    LabourCapacity {
        Ordinary = 1, "普通劳动力", 1;
        Skilled = 2, "技能劳动力", 1;
        Lost = 3, "丧失劳动力", 1;
        None = 4, "无劳动力", 1;
    }
);

code_list!(
    /// 在校生状况 schooling status.
    Schooling {
        NotInSchool = 1, "非在校生", 1;
        Preschool = 2, "学前教育", 1;
        Primary = 3, "小学", 1;
        JuniorSecondary = 4, "七至九年级", 1;
        SeniorSecondary = 5, "高中", 1;
        SecondaryVocational = 6, "中职", 1;
        HigherVocational = 7, "高职", 1;
        College = 8, "大专及以上", 1;
    }
);

code_list!(
    /// 残疾类别 disability type.
    Disability {
        None = 1, "无", 1;
        Visual = 2, "视力残疾", 1;
        Hearing = 3, "听力残疾", 1;
        Speech = 4, "言语残疾", 1;
        Physical = 5, "肢体残疾", 1;
        Intellectual = 6, "智力残疾", 1;
        Mental = 7, "精神残疾", 1;
        Multiple = 8, "多重残疾", 1;
    }
);

code_list!(
    /// 走访方式 visit mode. Only 入户 counts toward the monthly in-person rate.
    VisitMode {
        InPerson = 1, "入户", 1;
        Phone = 2, "电话", 1;
        WechatVideo = 3, "微信视频", 1;
        GroupMeeting = 4, "集中座谈", 1;
        Proxy = 5, "代访", 1;
    }
);

code_list!(
    /// 走访类型 visit type.
    VisitType {
        Routine = 1, "日常走访", 1;
        IncomeRegistration = 2, "收入登记", 1;
        PolicyBriefing = 3, "政策宣讲", 1;
        Condolence = 4, "慰问", 1;
        IdentificationCheck = 5, "识别核查", 1;
        ExitCheck = 6, "退出核查", 1;
        MonitoringCheck = 7, "监测核查", 1;
        SpotCheck = 8, "回访抽查", 1;
    }
);

code_list!(
    /// 非入户原因 why a visit was not made in person.
    VisitExceptionReason {
        WorkingAway = 1, "外出务工", 1;
        Epidemic = 2, "疫情", 1;
        NobodyHome = 3, "户不在家", 1;
        Disaster = 4, "灾害阻断", 1;
        Other = 99, "其他", 1;
    }
);

code_list!(
    /// 帮扶措施类别 help measure category.
    MeasureCategory {
        Industry = 1, "产业", 1;
        Employment = 2, "就业", 1;
        Relocation = 3, "易地搬迁", 1;
        Ecology = 4, "生态", 1;
        AssetIncome = 5, "资产收益", 1;
        Education = 6, "教育", 1;
        Medical = 7, "医疗", 1;
        Dibao = 8, "低保兜底", 1;
        HousingRenovation = 9, "危房改造", 1;
        Microcredit = 10, "小额信贷", 1;
        YuluPlan = 11, "雨露计划", 1;
        Infrastructure = 12, "基础设施", 1;
        PublicService = 13, "公共服务", 1;
    }
);

code_list!(
    /// 帮扶措施状态 help measure status.
    MeasureStatus {
        Planned = 1, "计划", 1;
        InProgress = 2, "实施中", 1;
        Done = 3, "完成", 1;
        Adjusted = 4, "调整", 1;
        Cancelled = 5, "取消", 1;
    }
);

code_list!(
    /// 资金来源 funding source.
    FundingSource {
        FiscalSpecial = 1, "财政专项", 1;
        Sector = 2, "行业资金", 1;
        Social = 3, "社会帮扶", 1;
        Credit = 4, "信贷", 1;
        SelfFunded = 5, "自筹", 1;
    }
);

code_list!(
    /// 坐标系 coordinate reference system.
    Crs {
        Wgs84 = 1, "WGS-84", 1;
        Gcj02 = 2, "GCJ-02", 1;
        Bd09 = 3, "BD-09", 1;
    }
);

code_list!(
    /// 定位来源 location provider.
    LocationProvider {
        Gps = 1, "卫星定位", 1;
        Network = 2, "网络定位", 1;
        Fused = 3, "融合定位", 1;
    }
);

code_list!(
    /// 照片内容 photo subject tag.
    PhotoSubject {
        WithHead = 1, "户主合影", 1;
        HouseOutside = 2, "住房外景", 1;
        HouseInside = 3, "住房内景", 1;
        Water = 4, "饮水设施", 1;
        Industry = 5, "产业现场", 1;
        Project = 6, "项目现场", 1;
        Signature = 7, "签字页", 1;
        Other = 99, "其他", 1;
    }
);

code_list!(
    /// 角色 role of a user.
    Role {
        Cadre = 1, "帮扶干部", 1;
        Village = 2, "村干部", 1;
        Township = 3, "乡镇审核员", 1;
        County = 4, "县级管理员", 1;
        Auditor = 5, "审计员", 1;
    }
);

code_list!(
    /// 审核状态 review state of one visit revision.
    ReviewState {
        Submitted = 1, "待审核", 1;
        Approved = 2, "已通过", 1;
        Returned = 3, "已退回", 1;
        Superseded = 4, "已更新", 1;
    }
);

code_list!(
    /// 干部职级 cadre rank, which sets the 8741 pairing quota.
    CadreRank {
        CountyLevel = 1, "正县级", 1;
        DeputyCountyLevel = 2, "副县级", 1;
        SectionLevel = 3, "科级", 1;
        General = 4, "一般干部", 1;
    }
);

impl CadreRank {
    /// The 8741 pairing quota of this rank in the default table
    /// ([`QuotaTable::TONGWEI_8741`](crate::pairing::QuotaTable::TONGWEI_8741), the one
    /// place the numbers live): 正县级 8, 副县级 7, 科级 4, 一般干部 1 household(s) as
    /// 第一帮扶责任人. Source, 通渭 [S:L741] (seed 000_1ad07601425cc4aa.txt line 741):
    /// "正县级干部、副县级干部、科级干部、一般干部每人分别结对帮扶8户、7户、4户、1户贫困户，
    /// 剩余贫困户由乡镇驻村干部兜底联系" (domain.md §1.6). A county with another scheme uses
    /// its own [`QuotaTable`](crate::pairing::QuotaTable) instead of this default.
    pub fn default_pairing_quota(self) -> u32 {
        crate::pairing::QuotaTable::TONGWEI_8741.for_rank(self)
    }
}

impl Role {
    /// Stable lower-case name used in tokens, settings and the console.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cadre => "cadre",
            Self::Village => "village",
            Self::Township => "township",
            Self::County => "county",
            Self::Auditor => "auditor",
        }
    }

    /// Parse the name written by [`Role::as_str`].
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|role| role.as_str() == name)
    }
}

impl ReviewState {
    /// Stable lower-case name used in storage.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Submitted => "submitted",
            Self::Approved => "approved",
            Self::Returned => "returned",
            Self::Superseded => "superseded",
        }
    }

    /// Parse the name written by [`ReviewState::as_str`].
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL
            .iter()
            .copied()
            .find(|state| state.as_str() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn assert_list_is_well_formed<T: CodeList + std::fmt::Debug + Eq + std::hash::Hash>() {
        let codes: HashSet<i32> = T::ALL.iter().map(|value| value.code()).collect();
        assert_eq!(codes.len(), T::ALL.len(), "duplicate code in {:?}", T::ALL);
        let labels: HashSet<&str> = T::ALL.iter().map(|value| value.label_zh()).collect();
        assert_eq!(
            labels.len(),
            T::ALL.len(),
            "duplicate label in {:?}",
            T::ALL
        );
        for value in T::ALL {
            assert!(
                value.code() > 0,
                "code 0 is reserved for 'unspecified' on the wire"
            );
            assert_eq!(T::from_code(value.code()), Some(*value));
            assert_eq!(T::from_label_zh(value.label_zh()), Some(*value));
            assert!(value.since_version() <= CODE_LIST_VERSION);
        }
        assert_eq!(T::from_code(0), None);
    }

    #[test]
    fn every_code_list_has_unique_codes_and_labels_that_round_trip() {
        assert_list_is_well_formed::<HouseholdAttribute>();
        assert_list_is_well_formed::<PovertyCause>();
        assert_list_is_well_formed::<HousingDangerLevel>();
        assert_list_is_well_formed::<Relation>();
        assert_list_is_well_formed::<Sex>();
        assert_list_is_well_formed::<Health>();
        assert_list_is_well_formed::<LabourCapacity>();
        assert_list_is_well_formed::<Schooling>();
        assert_list_is_well_formed::<Disability>();
        assert_list_is_well_formed::<VisitMode>();
        assert_list_is_well_formed::<VisitType>();
        assert_list_is_well_formed::<VisitExceptionReason>();
        assert_list_is_well_formed::<MeasureCategory>();
        assert_list_is_well_formed::<MeasureStatus>();
        assert_list_is_well_formed::<FundingSource>();
        assert_list_is_well_formed::<Crs>();
        assert_list_is_well_formed::<LocationProvider>();
        assert_list_is_well_formed::<PhotoSubject>();
        assert_list_is_well_formed::<Role>();
        assert_list_is_well_formed::<ReviewState>();
        assert_list_is_well_formed::<CadreRank>();
    }

    #[test]
    fn poverty_causes_keep_the_national_codes_and_mark_later_additions() {
        assert_eq!(PovertyCause::Illness.code(), 1);
        assert_eq!(PovertyCause::Illness.label_zh(), "因病");
        assert_eq!(PovertyCause::LackOfMotivation.code(), 11);
        assert_eq!(PovertyCause::PoorTransport.label_zh(), "交通条件落后");
        let version_one: Vec<_> = PovertyCause::ALL
            .iter()
            .filter(|cause| cause.since_version() == 1)
            .collect();
        assert_eq!(version_one.len(), 11, "the original list has codes 01–11");
        assert_eq!(PovertyCause::Marriage.since_version(), 2);
        assert_eq!(PovertyCause::from_code(12), Some(PovertyCause::Marriage));
    }

    #[test]
    fn only_a_and_b_houses_are_safe() {
        assert!(HousingDangerLevel::A.is_safe());
        assert!(HousingDangerLevel::B.is_safe());
        assert!(!HousingDangerLevel::C.is_safe());
        assert!(!HousingDangerLevel::D.is_safe());
    }

    #[test]
    fn pairing_quotas_follow_8741() {
        // [S:L741]: 正县级 8, 副县级 7, 科级 4, 一般干部 1.
        let quotas: Vec<u32> = [
            CadreRank::CountyLevel,
            CadreRank::DeputyCountyLevel,
            CadreRank::SectionLevel,
            CadreRank::General,
        ]
        .iter()
        .map(|rank| rank.default_pairing_quota())
        .collect();
        assert_eq!(quotas, vec![8, 7, 4, 1]);
        let table = crate::pairing::QuotaTable::TONGWEI_8741;
        for rank in CadreRank::ALL {
            assert_eq!(Some(rank.default_pairing_quota()), table.quota(Some(*rank)));
        }
    }

    #[test]
    fn role_names_round_trip() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Some(*role));
        }
        assert_eq!(Role::parse("root"), None);
    }
}
