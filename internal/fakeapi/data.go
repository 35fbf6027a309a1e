package fakeapi

// This file holds the vocabularies the generated contacts are drawn from.
// Each entry that feeds an email address or a LinkedIn handle carries an
// ASCII-folded form next to its display form.

// name is a display name and its ASCII-folded form for addresses.
type name struct {
	display, ascii string
}

var firstNames = []name{
	{"Jane", "jane"}, {"Bob", "bob"}, {"José", "jose"}, {"María", "maria"},
	{"Zoë", "zoe"}, {"Łukasz", "lukasz"}, {"Søren", "soren"}, {"François", "francois"},
	{"Björn", "bjorn"}, {"Siobhán", "siobhan"}, {"Ana", "ana"}, {"Michael", "michael"},
	{"Sarah", "sarah"}, {"Jean-Luc", "jeanluc"}, {"Chloé", "chloe"}, {"Agnieszka", "agnieszka"},
	{"João", "joao"}, {"Ayşe", "ayse"}, {"Çağla", "cagla"}, {"Ingrid", "ingrid"},
	{"Dmitri", "dmitri"}, {"Priya", "priya"}, {"Arjun", "arjun"}, {"Fatima", "fatima"},
	{"Omar", "omar"}, {"Aoife", "aoife"}, {"Renée", "renee"}, {"Håkon", "hakon"},
	{"Ólafur", "olafur"}, {"Émile", "emile"}, {"Małgorzata", "malgorzata"}, {"Jürgen", "jurgen"},
	{"Thảo", "thao"}, {"Nikolaj", "nikolaj"}, {"Lucía", "lucia"}, {"Tomás", "tomas"},
	{"David", "david"}, {"Emily", "emily"}, {"Olga", "olga"}, {"Kwame", "kwame"},
}

var lastNames = []name{
	{"Doe", "doe"}, {"Smith", "smith"}, {"Núñez", "nunez"}, {"Müller", "muller"},
	{"Ødegård", "odegard"}, {"O'Brien", "obrien"}, {"García Márquez", "garciamarquez"},
	{"van der Berg", "vanderberg"}, {"Johnson", "johnson"}, {"Kowalski", "kowalski"},
	{"Wiśniewska", "wisniewska"}, {"Dvořák", "dvorak"}, {"Nguyễn", "nguyen"},
	{"Schröder", "schroder"}, {"Fernández", "fernandez"}, {"Lefèvre", "lefevre"},
	{"Jørgensen", "jorgensen"}, {"Gonçalves", "goncalves"}, {"Yılmaz", "yilmaz"},
	{"Patel", "patel"}, {"Okafor", "okafor"}, {"Sánchez-Vidal", "sanchezvidal"},
	{"Brontë", "bronte"}, {"Åberg", "aberg"}, {"Ivanova", "ivanova"}, {"Kim", "kim"},
	{"Brown", "brown"}, {"Lindqvist", "lindqvist"}, {"Mensah", "mensah"}, {"Rossi", "rossi"},
}

// CJK names are written family name first with no space.
var cjkFamilyNames = []name{
	{"王", "wang"}, {"李", "li"}, {"张", "zhang"}, {"刘", "liu"}, {"陈", "chen"},
	{"佐藤", "sato"}, {"鈴木", "suzuki"}, {"김", "kim"},
}

var cjkGivenNames = []name{
	{"伟", "wei"}, {"芳", "fang"}, {"娜", "na"}, {"秀英", "xiuying"}, {"敏", "min"},
	{"花子", "hanako"}, {"健", "ken"}, {"民俊", "minjun"},
}

// company is a company name and the mail domain its people use.
type company struct {
	name, domain string
}

var companies = []company{
	{"Acme Corp", "acme.com"},
	{"Beta LLP", "beta.com"},
	{"Smith, Jones & Co.", "smithjones.com"},
	{`The "Best" LLC`, "thebest.com"},
	{"Müller & Söhne GmbH", "mueller-soehne.de"},
	{"Núñez Abogados, S.L.", "nunezabogados.es"},
	{"Kowalski i Wspólnicy sp.k.", "kowalski.pl"},
	{"北京金杜律师事务所", "bjlaw.cn"},
	{"Ødegård Advokatfirma AS", "odegard.no"},
	{"Dewey, Cheatem & Howe", "dch-law.com"},
	{"O'Neil Legal", "oneil-legal.com"},
	{"Widget Works, Inc.", "widgetworks.com"},
	{`"Quoted" Consulting`, "quoted.co"},
	{"São Paulo Tech Ltda.", "sptech.com.br"},
	{"Zürich Re Partners AG", "zrp.ch"},
	{"Initech", "initech.com"},
	{"Globex Corporation", "globex.com"},
	{"Stark & Wayne LLP", "starkwayne.com"},
	{"Lefèvre et Associés", "lefevre-associes.fr"},
	{"Hooli", "hooli.com"},
}

var freeMailDomains = []string{
	"gmail.com", "outlook.com", "yahoo.co.uk", "proton.me", "gmx.de", "web.de", "qq.com",
}

var jobTitles = []string{
	"General Counsel", "CEO", "Chief Legal Officer", "Paralegal", "Associate",
	"Senior Associate, M&A", "Partner", "Managing Partner", "Legal Operations Manager",
	"VP, Legal & Compliance", `Head of "Special" Projects`, "Director of Contracts",
	"Compliance Officer", "Abogada", "Rechtsanwältin", "Office Manager", "CTO",
	"Head of Sales, EMEA", "Contract Manager", "Data Protection Officer",
}

// place is a city and its country.
type place struct {
	city, country string
}

var places = []place{
	{"São Paulo", "Brazil"}, {"Zürich", "Switzerland"}, {"Kraków", "Poland"},
	{"München", "Germany"}, {"Köln", "Germany"}, {"Montréal", "Canada"},
	{"Malmö", "Sweden"}, {"Reykjavík", "Iceland"}, {"Bogotá", "Colombia"},
	{"İstanbul", "Türkiye"}, {"Ciudad de México", "México"}, {"New York", "United States"},
	{"London", "United Kingdom"}, {"Berlin", "Germany"}, {"Paris", "France"},
	{"東京", "日本"}, {"北京", "中国"}, {"Lisboa", "Portugal"}, {"Aarhus", "Danmark"},
	{"Gdańsk", "Poland"}, {"Düsseldorf", "Germany"}, {"Washington, D.C.", "United States"},
}

var noteSentences = []string{
	`Met at "Legal Tech Expo", asked about pricing.`,
	"Follow up in Q3.",
	"Prefers email; do not call before 10:00.",
	`Intro via Zoë Müller, said "call me next week".`,
	"Budget approved, 50,000 EUR.",
	"Renewal due 2026-01-31",
	"Ñandú project — on hold",
	`Contract signed, see "MSA v2", clause 4.`,
	"Left voicemail",
	"Wants a demo for the litigation team, 5-10 seats",
	"Moved from Acme Corp",
	"会议纪要已发送",
}

// tagVocabulary lists every tag a contact can carry, in the order tags are
// written.
var tagVocabulary = []string{
	"lead", "priority", "prospect", "customer", "churned", "vip", "partner",
	"newsletter", "event-2024", "trade show",
}

// tagWeights gives the relative frequency of each tag in tagVocabulary.
var tagWeights = []int{30, 10, 25, 15, 5, 4, 6, 20, 8, 6}

// numLists is the number of lists (lst_01 .. lst_20) contacts belong to.
const numLists = 20

var listIDs = func() []string {
	ids := make([]string, numLists)
	for i := range ids {
		ids[i] = "lst_" + string(rune('0'+(i+1)/10)) + string(rune('0'+(i+1)%10))
	}
	return ids
}()

// offsetMinutes are the UTC offsets used by TimeOffset; zero is left out so
// that every row shows a numeric offset.
var offsetMinutes = []int{
	-8 * 60, -5 * 60, -5*60 - 30, -3*60 - 30, 60, 2 * 60, 5*60 + 30, 5*60 + 45, 8 * 60, 9 * 60, 10*60 + 30,
}
