"""The names OCPP 2.0.1 standardizes (Part 2, appendix 3): every component and the
variables of each, as the ``ocpp`` library's v201 enums list them (ControllerComponentName,
PhysicalComponentName and the per-component ``<Component>VariableName`` enums).

Written out as data rather than read from the library's enum classes, which would have the
agent build some 180 enum classes at every start for some 500 names. A unit test
(tests/unit/test_v201_device_model.py) checks that :data:`KNOWN` is what the library's
enums give, and names the difference when a new ``ocpp`` release changes them: this table
is then updated to the library's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

#: Every standardized component name -> its standardized variable names, in the library's
#: order of components (controllers, then physical components).
KNOWN: Final[Mapping[str, frozenset[str]]] = {
    "AlignedDataCtrlr": frozenset(
        {
            "Available",
            "Enabled",
            "Interval",
            "Measurands",
            "SendDuringIdle",
            "SignReadings",
            "TxEndedInterval",
            "TxEndedMeasurands",
        }
    ),
    "AuthCacheCtrlr": frozenset(
        {
            "Available",
            "DisablePostAuthorize",
            "Enabled",
            "LifeTime",
            "Policy",
            "Storage",
        }
    ),
    "AuthCtrlr": frozenset(
        {
            "AdditionalInfoItemsPerMessage",
            "AuthorizeRemoteStart",
            "DisableRemoteAuthorization",
            "Enabled",
            "LocalAuthorizeOffline",
            "LocalPreAuthorize",
            "MasterPassGroupId",
            "OfflineTxForUnknownIdEnabled",
        }
    ),
    "CHAdeMOCtrlr": frozenset(
        {
            "Active",
            "AutoManufacturerCode",
            "CHAdeMOProtocolNumber",
            "Complete",
            "DynamicControl",
            "Enabled",
            "HighCurrentControl",
            "HighVoltageControl",
            "Problem",
            "SelftestActive",
            "SelftestActive(Set)",
            "Tripped",
            "VehicleStatus",
        }
    ),
    "ClockCtrlr": frozenset(
        {
            "DateTime",
            "NextTimeOffsetTransitionDateTime",
            "NtpServerUri",
            "NtpSource",
            "TimeAdjustmentReportingThreshold",
            "TimeOffset",
            "TimeSource",
            "TimeZone",
        }
    ),
    "CustomizationCtrlr": frozenset(
        {
            "CustomImplementationEnabled",
        }
    ),
    "DeviceDataCtrlr": frozenset(
        {
            "BytesPerMessage",
            "ConfigurationValueSize",
            "ItemsPerMessage",
            "ReportingValueSize",
            "ValueSize",
        }
    ),
    "DisplayMessageCtrlr": frozenset(
        {
            "Available",
            "DisplayMessages",
            "Enabled",
            "PersonalMessageSize",
            "SupportedFormats",
            "SupportedPriorities",
        }
    ),
    "ISO15118Ctrlr": frozenset(
        {
            "Active",
            "CentralContractValidationAllowed",
            "Complete",
            "ContractCertificateInstallationEnabled",
            "ContractValidationOffline",
            "CountryName",
            "Enabled",
            "MaxScheduleEntries",
            "OrganizationName",
            "PnCEnabled",
            "Problem",
            "RequestMeteringReceipt",
            "RequestedEnergyTransferMode",
            "SeccId",
            "SelftestActive",
            "SelftestActive(Set)",
            "Tripped",
            "V2GCertificateInstallationEnabled",
        }
    ),
    "LocalAuthListCtrlr": frozenset(
        {
            "Available",
            "BytesPerMessage",
            "DisablePostAuthorize",
            "Enabled",
            "Entries",
            "ItemsPerMessage",
            "Storage",
        }
    ),
    "MonitoringCtrlr": frozenset(
        {
            "ActiveMonitoringBase",
            "ActiveMonitoringLevel",
            "Available",
            "BytesPerMessage",
            "Enabled",
            "ItemsPerMessage",
            "MonitoringBase",
            "MonitoringLevel",
            "OfflineQueuingSeverity",
        }
    ),
    "OCPPCommCtrlr": frozenset(
        {
            "ActiveNetworkProfile",
            "FieldLength",
            "FileTransferProtocols",
            "HeartbeatInterval",
            "MessageAttemptInterval",
            "MessageAttempts",
            "MessageTimeout",
            "MinimumStatusDuration",
            "NetworkConfigurationPriority",
            "NetworkProfileConnectionAttempts",
            "OfflineThreshold",
            "PublicKeyWithSignedMeterValue",
            "QueueAllMessages",
            "ResetRetries",
            "RetryBackOffRandomRange",
            "RetryBackOffRepeatTimes",
            "RetryBackOffWaitMinimum",
            "UnlockOnEVSideDisconnect",
            "WebSocketPingInterval",
        }
    ),
    "ReservationCtrlr": frozenset(
        {
            "Available",
            "Enabled",
            "NonEvseSpecific",
        }
    ),
    "SampledDataCtrlr": frozenset(
        {
            "Available",
            "Enabled",
            "RegisterValuesWithoutPhases",
            "SignReadings",
            "TxEndedInterval",
            "TxEndedMeasurands",
            "TxStartedMeasurands",
            "TxUpdatedInterval",
            "TxUpdatedMeasurands",
        }
    ),
    "SecurityCtrlr": frozenset(
        {
            "AdditionalRootCertificateCheck",
            "BasicAuthPassword",
            "CertSigningRepeatTimes",
            "CertSigningWaitMinimum",
            "CertificateEntries",
            "Identity",
            "MaxCertificateChainSize",
            "OrganizationName",
            "SecurityProfile",
        }
    ),
    "SmartChargingCtrlr": frozenset(
        {
            "ACPhaseSwitchingSupported",
            "Available",
            "Enabled",
            "Entries",
            "ExternalControlSignalsEnabled",
            "LimitChangeSignificance",
            "NotifyChargingLimitWithSchedules",
            "PeriodsPerSchedule",
            "Phases3to1",
            "ProfileStackLevel",
            "RateUnit",
        }
    ),
    "TariffCostCtrlr": frozenset(
        {
            "Available",
            "Currency",
            "Enabled",
            "TariffFallbackMessage",
            "TotalCostFallbackMessage",
        }
    ),
    "TxCtrlr": frozenset(
        {
            "EVConnectionTimeOut",
            "MaxEnergyOnInvalidId",
            "StopTxOnEVSideDisconnect",
            "StopTxOnInvalidId",
            "TxBeforeAcceptedEnabled",
            "TxStartPoint",
            "TxStopPoint",
        }
    ),
    "AccessBarrier": frozenset(
        {
            "Active",
            "Enabled",
            "Problem",
        }
    ),
    "AcDcConverter": frozenset(
        {
            "DCCurrent",
            "DCVoltage",
            "Enabled",
            "FanSpeed",
            "Overload",
            "Power",
            "Problem",
            "Temperature",
            "Tripped",
        }
    ),
    "AcPhaseSelector": frozenset(
        {
            "Active",
            "Enabled",
            "PhaseRotation",
            "Problem",
        }
    ),
    "Actuator": frozenset(
        {
            "Active",
            "Enabled",
            "Problem",
            "State",
        }
    ),
    "AirCoolingSystem": frozenset(
        {
            "Active",
            "Enabled",
            "FanSpeed",
            "Problem",
        }
    ),
    "AreaVentilation": frozenset(
        {
            "Active",
            "Enabled",
            "FanSpeed",
            "Problem",
        }
    ),
    "BayOccupancySensor": frozenset(
        {
            "Active",
            "Enabled",
            "Percent",
        }
    ),
    "BeaconLighting": frozenset(
        {
            "Active",
            "Color",
            "Enabled",
            "Enabled(Set)",
            "Percent",
            "Percent(Set)",
            "Power",
            "Problem",
        }
    ),
    "CableBreakawaySensor": frozenset(
        {
            "Active",
            "Enabled",
            "Tripped",
        }
    ),
    "CaseAccessSensor": frozenset(
        {
            "Active",
            "Enabled",
            "Enabled(Set)",
            "Problem",
            "Tripped",
        }
    ),
    "ChargingStation": frozenset(
        {
            "ACCurrent",
            "ACVoltage",
            "ACVoltage(MaxLimit)",
            "AllowNewSessionsPendingFirmwareUpdate",
            "AvailabilityState",
            "Available",
            "ChargeProtocol",
            "CurrentImbalance",
            "ECVariant",
            "Enabled",
            "Model",
            "OperatingTimes",
            "Overload",
            "PhaseRotation",
            "Power",
            "Power(MaxLimit)",
            "Problem",
            "SerialNumber",
            "SupplyPhases",
            "SupplyPhases(MaxLimit)",
            "Tripped",
            "VendorName",
            "VoltageImbalance",
        }
    ),
    "ChargingStatusIndicator": frozenset(
        {
            "Active",
            "Color",
        }
    ),
    "ConnectedEV": frozenset(
        {
            "ACCurrent.maxSet",
            "ACCurrent.minSet",
            "ACVoltage.maxSet",
            "Available",
            "BatteryOvervoltage",
            "BatteryTemperature",
            "BatteryUndervoltage",
            "ChargerConnectorLockFault",
            "ChargingCompleteBulk",
            "ChargingCompleteFull",
            "ChargingCurrentDeviation",
            "ChargingSystemError",
            "ChargingSystemIncompatibility",
            "DCCurrent.maxSet",
            "DCCurrent.minSet",
            "DCCurrent.target",
            "DCVoltage.maxSet",
            "DCVoltage.minSet",
            "DCVoltage.target",
            "DepartureTime",
            "EnergyCapacity",
            "EnergyImport.target",
            "Power.maxSet",
            "ProtocolAgreed",
            "ProtocolSupportedByEV",
            "RemainingTimeBulk",
            "RemainingTimeFull.actual",
            "RemainingTimeFull.maxSet",
            "StateOfCharge.actual",
            "StateOfCharge.maxSet",
            "StateOfChargeBulk",
            "VehicleChargingEnabled",
            "VehicleId",
            "VehicleShiftPosition",
            "VoltageDeviation",
        }
    ),
    "Connector": frozenset(
        {
            "AvailabilityState",
            "Available",
            "ChargeProtocol",
            "ConnectorType",
            "Enabled",
            "PhaseRotation",
            "Problem",
            "SupplyPhases",
            "SupplyPhases(MaxLimit)",
            "Tripped",
        }
    ),
    "ConnectorHolsterRelease": frozenset(
        {
            "Active",
            "Enabled",
            "Problem",
            "State",
        }
    ),
    "ConnectorHolsterSensor": frozenset(
        {
            "Active",
            "Enabled",
            "Problem",
        }
    ),
    "ConnectorPlugRetentionLock": frozenset(
        {
            "Active",
            "Enabled",
            "Problem",
            "Tries",
            "Tries(MaxLimit)",
            "Tries(SetLimit)",
            "Tripped",
        }
    ),
    "ConnectorProtectionRelease": frozenset(
        {
            "Active",
            "Enabled",
            "Problem",
            "Tripped",
        }
    ),
    "Controller": frozenset(
        {
            "Active",
            "ECVariant",
            "FirmwareVersion",
            "Interval[Heartbeat]",
            "Manufacturer",
            "MaxMsgElements",
            "Model",
            "Problem",
            "SelftestActive",
            "SelftestActive(Set)",
            "SerialNumber",
            "VersionDate",
            "VersionNumber",
        }
    ),
    "ControlMetering": frozenset(
        {
            "ACCurrent",
            "DCCurrent",
            "DCVoltage",
            "Power",
        }
    ),
    "CPPWMController": frozenset(
        {
            "Active",
            "DCVoltage",
            "Enabled",
            "Percentage",
            "Problem",
            "SelftestActive",
            "SelftestActive(Set)",
            "State",
        }
    ),
    "DataLink": frozenset(
        {
            "Active",
            "Complete",
            "Enabled",
            "Fallback",
            "ICCID",
            "IMSI",
            "NetworkAddress",
            "Problem",
            "SignalStrength",
        }
    ),
    "Display": frozenset(
        {
            "Color",
            "Count[HeightInChars]",
            "Count[WidthInChars]",
            "DataText[Visible]",
            "Enabled",
            "Problem",
            "State",
        }
    ),
    "DistributionPanel": frozenset(
        {
            "ChargingStation",
            "DistributionPanel",
            "Fuse",
            "InstanceName",
        }
    ),
    "ElectricalFeed": frozenset(
        {
            "ACVoltage",
            "Active",
            "DCVoltage",
            "Enabled",
            "Energy",
            "PhaseRotation",
            "Power",
            "PowerType",
            "Problem",
            "SupplyPhases",
        }
    ),
    "ELVSupply": frozenset(
        {
            "EnergyImportRegister",
            "Fallback",
            "Fallback(MaxLimit)",
            "Power",
            "Power(MaxLimit)",
            "StateOfCharge",
            "Time",
        }
    ),
    "EmergencyStopSensor": frozenset(
        {
            "Active",
            "Enabled",
            "Tripped",
        }
    ),
    "EnvironmentalLighting": frozenset(
        {
            "Active",
            "Color",
            "Enabled",
            "Enabled(Set)",
            "Percent",
            "Percent(Set)",
            "Power",
            "Problem",
        }
    ),
    "EVRetentionLock": frozenset(
        {
            "Active",
            "Complete",
            "Enabled",
            "Problem",
        }
    ),
    "EVSE": frozenset(
        {
            "ACCurrent",
            "ACVoltage",
            "AllowReset",
            "AvailabilityState",
            "Available",
            "ChargeProtocol",
            "ChargingTime",
            "Count[ChargingProfiles]",
            "Count[ChargingProfiles](MaxLimit)",
            "CurrentImbalance",
            "DCCurrent",
            "DCVoltage",
            "Enabled",
            "EvseId",
            "ISO15118EvseId",
            "Overload",
            "PhaseRotation",
            "PostChargingTime",
            "Power",
            "Problem",
            "SupplyPhases",
            "Tripped",
            "VoltageImbalance",
        }
    ),
    "ExternalTemperatureSensor": frozenset(
        {
            "Active",
            "Problem",
            "Temperature",
        }
    ),
    "FiscalMetering": frozenset(
        {
            "Certificate",
            "ECVariant",
            "EnergyExport",
            "EnergyExportRegister",
            "EnergyImport",
            "EnergyImportRegister",
            "Manufacturer[CT]",
            "Manufacturer[Meter]",
            "Model[CT]",
            "Model[Meter]",
            "OptionsSet[MeterValueAlignedData]",
            "OptionsSet[TxnStoppedAlignedData]",
            "Problem",
            "SerialNumber[CT]",
            "SerialNumber[Meter]",
        }
    ),
    "FloodSensor": frozenset(
        {
            "Active",
            "Enabled",
            "Height",
            "Percent",
            "Tripped",
        }
    ),
    "GroundIsolationProtection": frozenset(
        {
            "Active",
            "Complete",
            "Enabled",
            "Impedance",
            "Problem",
        }
    ),
    "Heater": frozenset(
        {
            "Active",
            "Enabled",
            "Power",
            "Power(MaxLimit)",
            "Power(MaxSet)",
            "Problem",
            "Temperature(MaxSet)",
            "Temperature(MinSet)",
            "Tripped",
        }
    ),
    "HumiditySensor": frozenset(
        {
            "Enabled",
            "Humidity",
            "Problem",
        }
    ),
    "LightSensor": frozenset(
        {
            "Enabled",
            "Light",
            "Problem",
        }
    ),
    "LiquidCoolingSystem": frozenset(
        {
            "Active",
            "Enabled",
            "Problem",
            "Temperature",
        }
    ),
    "LocalAvailabilitySensor": frozenset(
        {
            "Active",
            "Enabled",
            "Problem",
        }
    ),
    "LocalController": frozenset(
        {
            "ChargingStation",
            "DistributionPanel",
            "ECVariant",
            "Enabled",
            "Identity",
            "Manufacturer",
            "Model",
            "Problem",
            "SerialNumber",
            "Tripped",
        }
    ),
    "LocalEnergyStorage": frozenset(
        {
            "EnergyCapacity",
            "Identity",
        }
    ),
    "OverCurrentProtection": frozenset(
        {
            "ACCurrent",
            "Active",
            "Operated",
        }
    ),
    "OverCurrentProtectionRecloser": frozenset(
        {
            "Active",
            "Active(Set)",
            "Complete",
            "Enabled",
            "Mode",
            "Problem",
            "Tries",
            "Tries(MaxLimit)",
            "Tries(SetLimit)",
        }
    ),
    "PowerContactor": frozenset(
        {
            "Active",
            "Problem",
            "Tripped",
        }
    ),
    "RCD": frozenset(
        {
            "Operated",
            "Tripped",
        }
    ),
    "RCDRecloser": frozenset(
        {
            "Active",
            "Active(Set)",
            "Complete",
            "Enabled",
            "Problem",
            "Tries",
            "Tries(MaxLimit)",
            "Tries(SetLimit)",
        }
    ),
    "RealTimeClock": frozenset(
        {
            "Active",
            "DCVoltage",
            "Fallback",
            "Fallback(MaxLimit)",
            "Problem",
        }
    ),
    "ShockSensor": frozenset(
        {
            "Active",
            "Enabled",
            "Force",
        }
    ),
    "SpacesCountSignage": frozenset(
        {
            "Active",
            "Count",
            "Enabled",
        }
    ),
    "Switch": frozenset(
        {
            "Active",
            "Enabled",
            "State",
        }
    ),
    "TemperatureSensor": frozenset(
        {
            "Active",
            "Problem",
            "Temperature",
        }
    ),
    "TiltSensor": frozenset(
        {
            "Active",
            "Angle",
            "Enabled",
        }
    ),
    "TokenReader": frozenset(
        {
            "Enabled",
            "Enabled(Set)",
            "Operated",
            "Problem",
            "Token",
            "TokenType",
        }
    ),
    "UIInput": frozenset(
        {
            "Active",
            "Enabled",
            "Operated",
        }
    ),
    "UpstreamProtectionTrigger": frozenset(
        {
            "Active(Set)",
            "Enabled",
            "Problem",
            "Tripped",
        }
    ),
    "VehicleIdSensor": frozenset(
        {
            "Active",
            "Enabled",
        }
    ),
}
